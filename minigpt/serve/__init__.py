"""`minigpt serve`: an OpenAI-compatible HTTP server over continuous batched decoding
(`minigpt.generation.batch`), and a web page to chat with the model and look inside it.

`protocol` reads requests, `answer` writes OpenAI's objects, `engine` runs the decoder
in its thread, `service` holds the model served, `inside` answers the page's
inspection requests, `app` is the FastAPI application; `page.html` is the page. Needs
the `serve` extra (FastAPI, uvicorn).
"""
