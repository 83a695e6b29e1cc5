"""What the tests share: real servers, kernels, Redis and a model server started and stopped
with bounded waits (`servers`, `kernels`, `services` (`jupyter llmchat serve`), `redis_server`,
`model_server`), the fast tier's stand-ins (`fakes`, `standin`), a fake Hugging Face Hub and
Ollama store (`fake_hub`), the answer-quality checks, the fuzzer, and `until`."""
