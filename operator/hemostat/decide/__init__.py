"""Pure decisions over a snapshot: no kopf, kubernetes or httpx here, and `now` is an argument."""
