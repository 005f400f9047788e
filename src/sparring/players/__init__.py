"""Players: a policy with its reference, value head, tokenizer and template."""
