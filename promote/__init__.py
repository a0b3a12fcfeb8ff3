"""Promotion by reference: policy-gated, evidence-checked, ledger-recorded."""
