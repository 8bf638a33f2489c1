"""A genome as token shards (the tokenize stage) and the datasets of token windows training reads."""
