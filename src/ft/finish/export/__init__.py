"""`ft export`: a finished run as files other runtimes load, each checked against transformers.

- format=gguf: the merged model converted by llama.cpp's own converter (convert_hf_to_gguf.py's model
  classes, the `gguf` package's writer and tensor maps) and quantized by llama.cpp (llama-cpp-python);
- format=gguf-adapter: the LoRA adapter alone as a GGUF LoRA (convert_lora_to_gguf.py), for a base GGUF;
- format=merged: a plain transformers directory (what vLLM/SGLang serve).
A GGUF export is then loaded by llama.cpp and compared with the merged transformers model: tokens,
next-token logits and greedy continuations (parity.py). Modelfile and card: ollama.py.
"""
