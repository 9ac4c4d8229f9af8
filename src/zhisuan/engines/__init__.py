"""Model engines: launch profiles (pure: model spec + device assignment → argv + env) and the
replica supervisor that runs them as local processes.

One module per engine: ``llamacpp`` (CPU, GGUF), ``vllm`` (CUDA), ``vllm_ascend`` and ``mindie``
(CANN). ``profiles.launch_plan`` picks the profile named by the model spec.
"""
