"""Every setting and its sources (flag > env > invoke.yaml > default), resolved once."""
