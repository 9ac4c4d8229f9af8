"""Recorded SMI outputs of whole machines, for demo mode (ZHISUAN_FAKE_SMI_DIR)."""
