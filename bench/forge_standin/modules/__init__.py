"""A stand-in for the few parts of Forge's `modules` package (the WebUI around its `backend`) that
Forge's backend and our host code read, for bench/forge_bench.py, which runs Forge's backend
without its web server. Each value mirrors Forge dfdcbab6's own code, cited in each file; nothing
here is used by the extension itself."""
