"""Traffic simulator: synthetic per-pod HTTP metrics driven by pod annotations.

A separate process for end-to-end tests; the operator never imports it.
`behaviour` is pure, `cluster` reads the API, `metrics` exports, `app` runs it.
"""
