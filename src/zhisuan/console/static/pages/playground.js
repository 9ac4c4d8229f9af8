// The playground (tenants): chat with a running model service, streamed. The request goes to the API's
// same-origin pass-through (/api/v1/playground/…), which forwards it with the signed-in session key to
// the /v1 gateway: the gateway authenticates, limits, budgets and meters it as any /v1 call.
import {$, el, fill, errorBox, empty} from "../lib/dom.js";
import {t, formatNumber} from "../lib/i18n.js";
import {call, stream} from "../lib/api.js";

function bubble(role, text) {
  return el("div", {class: "message " + role},
    el("span", {class: "speaker"}, role === "user" ? t("playground.you") : t("playground.model")),
    el("div", {class: "text"}, text));
}

export async function playgroundPage(view) {
  const deployments = await call("/deployments");
  const models = [...new Set(deployments.filter((d) => d.status === "running").map((d) => d.model))].sort();
  const history = [];
  const form = el("form", {id: "playground-form", class: "inline-form"},
    el("div", {class: "field"}, el("label", {for: "playground-model"}, t("playground.model_label")),
      el("select", {id: "playground-model"}, models.map((m) => el("option", {value: m}, m)))),
    el("div", {class: "field"}, el("label", {for: "playground-max-tokens"}, t("playground.max_tokens")),
      el("input", {id: "playground-max-tokens", type: "number", min: 1, max: 2048, value: 64, required: true})),
    el("div", {class: "field wide"}, el("label", {for: "playground-prompt"}, t("playground.prompt")),
      el("textarea", {id: "playground-prompt", rows: 3, required: true})),
    el("button", {type: "submit", id: "playground-send"}, t("playground.send")),
    el("button", {type: "button", id: "playground-clear", on: {click: () => { history.length = 0; fill("playground-transcript"); fill("playground-usage"); }}},
      t("playground.clear")));
  view.root.replaceChildren(
    el("section", {id: "playground-section"},
      el("div", {class: "head"}, el("h2", {}, t("playground.title")), el("span", {class: "muted"}, t("playground.note"))),
      models.length ? form : empty(t("playground.no_models")),
      el("div", {id: "playground-transcript", class: "transcript", "aria-live": "polite"}),
      el("div", {id: "playground-usage", class: "muted usage-line"}),
      el("div", {id: "playground-error"})));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const prompt = $("playground-prompt").value.trim();
    if (!prompt) return;
    history.push({role: "user", content: prompt});
    const answer = bubble("assistant", "");
    $("playground-transcript").append(bubble("user", prompt), answer);
    $("playground-prompt").value = "";
    $("playground-send").disabled = true;
    fill("playground-error"); fill("playground-usage");
    const text = answer.querySelector(".text");
    let usage = null;
    try {
      await stream("/playground/chat/completions", {
        model: $("playground-model").value, messages: history, stream: true,
        stream_options: {include_usage: true}, max_tokens: Number($("playground-max-tokens").value),
      }, (chunk) => {
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) text.textContent += delta;
        if (chunk.usage) usage = chunk.usage;
      });
      history.push({role: "assistant", content: text.textContent});
      answer.dataset.done = "true";
      if (usage) fill("playground-usage", t("playground.usage", {prompt: formatNumber(usage.prompt_tokens, 0),
                                                                   completion: formatNumber(usage.completion_tokens, 0)}));
    } catch (e) {
      history.pop();
      answer.remove();
      fill("playground-error", errorBox(e));
    } finally {
      const send = $("playground-send");
      if (send) send.disabled = false;
    }
  });
}
