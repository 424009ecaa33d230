"""`minigpt serve` as a real process on 127.0.0.1, driven by the official `openai`
package and by raw HTTP: what it generates is what the library generates for the same
prompt, settings and seed; streams are framed as OpenAI frames them; every error has
OpenAI's shape and status; a client that leaves frees its row; requests decoded
together give what each gives alone.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from minigpt.checkpoint import load_checkpoint
from minigpt.generation.chat import ChatFormat, chat_stop
from minigpt.generation.generate import generate_text
from minigpt.serve.config import ServeConfig
from minigpt.serve.protocol import parse_request
from tests.serving import Server, http, running_server, train_small_run

HELLO = [{"role": "user", "content": "Good morrow, my lord."}]
LONG = {"prompt": "To be", "max_tokens": 10**6, "stream": True, "ignore_eos": True}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_small_run(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(run: Path, tmp_path_factory: pytest.TempPathFactory):
    with running_server(run, "--max-batch", 8, tmp=tmp_path_factory.mktemp("log")) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def checkpoint(run: Path):
    return load_checkpoint(run)


def library(checkpoint, kind: str, body: dict) -> list[str]:
    """What minigpt's own generation path gives for this request body (each choice)."""
    model, tok = checkpoint.model, checkpoint.tokenizer
    request = parse_request(kind, body, tok, model.config.block_size, ServeConfig())
    generation = generate_text(model, tok, request.ids, request.config, stop_ids=request.stop_ids)
    list(generation)
    return [c.text for c in generation.completions]


def idle(server: Server, seconds: float = 60) -> dict:
    """The server's status once nothing decodes (or the time is up)."""
    deadline = time.monotonic() + seconds
    while (status := server.get("/v1/minigpt/status")[1])["rows"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def test_health_models_and_an_unknown_model(server: Server, client: openai.OpenAI) -> None:
    assert server.get("/health") == (200, {"status": "ok", "model": "bard"})
    assert [m.id for m in client.models.list().data] == ["bard"]
    status, body = server.post("/v1/completions", {"model": "gpt-9", "prompt": "a"})
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert "bard" in body["error"]["message"] and body["error"]["param"] == "model"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-9", messages=HELLO)


def test_chat_gives_what_the_library_gives(client: openai.OpenAI, checkpoint) -> None:
    body = {"messages": HELLO, "max_tokens": 30, "seed": 7, "temperature": 0.9}
    reply = client.chat.completions.create(model="bard", **body)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert [choice.message.content] == library(checkpoint, "chat", body)
    assert choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert (
        usage.completion_tokens <= 30
        and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    )
    # a plain-text model sees the user's turn followed by the blank line that ends a turn
    tok = checkpoint.tokenizer
    chat = ChatFormat.of(tok, chat_stop(tok))
    assert usage.prompt_tokens == len(chat.user_ids(HELLO[0]["content"]))


def test_a_streamed_chat_is_the_same_reply_in_pieces(client: openai.OpenAI) -> None:
    body = {"messages": HELLO, "max_tokens": 25, "seed": 3}
    whole = client.chat.completions.create(model="bard", **body)
    chunks = list(client.chat.completions.create(
        model="bard", stream=True, stream_options={"include_usage": True}, **body))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_completions_with_n_stop_and_seed(client: openai.OpenAI, checkpoint) -> None:
    body = {"prompt": "KING HENRY:", "max_tokens": 20, "n": 3, "seed": 11, "temperature": 1.0}
    out = client.completions.create(model="bard", **body)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert [c.text for c in out.choices] == library(checkpoint, "completion", body)
    assert len({c.text for c in out.choices}) > 1  # n samples, not n copies
    again = client.completions.create(model="bard", **body)
    assert [c.text for c in again.choices] == [c.text for c in out.choices]  # same seed
    other = client.completions.create(model="bard", **(body | {"seed": 12}))
    assert [c.text for c in other.choices] != [c.text for c in out.choices]
    streamed = client.completions.create(model="bard", stream=True, **body)
    texts = ["", "", ""]
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert texts == [c.text for c in out.choices]
    stop = client.completions.create(model="bard", prompt="KING", max_tokens=60, seed=1,
                                     stop=[" ", "\n"])  # fmt: skip
    assert stop.choices[0].finish_reason == "stop"
    assert " " not in stop.choices[0].text and "\n" not in stop.choices[0].text


def test_log_probabilities(client: openai.OpenAI) -> None:
    out = client.completions.create(model="bard", prompt="ROMEO", max_tokens=8, logprobs=3,
                                    temperature=0, seed=0)  # fmt: skip
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 8
    assert all(v <= 0 for v in lp.token_logprobs)
    assert all(len(top) <= 3 and max(top.values()) >= v - 1e-6
               for top, v in zip(lp.top_logprobs, lp.token_logprobs, strict=True))  # fmt: skip
    assert lp.text_offset[0] == 0 and lp.text_offset == sorted(lp.text_offset)
    chat = client.chat.completions.create(model="bard", messages=HELLO, max_tokens=6, seed=0,
                                          logprobs=True, top_logprobs=4)  # fmt: skip
    content = chat.choices[0].logprobs.content
    assert 1 <= len(content) == chat.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 4 and entry.logprob <= 0
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token


def test_raw_server_sent_events(server: Server) -> None:
    body = {"prompt": "To be", "max_tokens": 5, "stream": True, "seed": 1}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    payloads = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") and "\n" not in e for e in events[:-1])
    assert all(p["object"] == "text_completion" and p["model"] == "bard" for p in payloads)
    assert len({p["id"] for p in payloads}) == 1
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"prompt": "a", "temperature": 5}, 400, "temperature"),
        ({"prompt": "a", "max_tokens": -1}, 400, "max_tokens"),
        ({"prompt": "a", "max_tokens": 10**6}, 400, "max_tokens"),
        ({"prompt": "a", "n": 0}, 400, "n"),
        ({"prompt": "a", "logit_bias": {"1": 5}}, 400, "logit_bias"),
        ({"prompt": "a", "frobnicate": 1}, 400, "frobnicate"),
        ({"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, 400, "stop"),
        ({"prompt": 7}, 400, "prompt"),
        ({"prompt": [10**9]}, 400, "prompt"),
        ({"prompt": "a", "seed": "x"}, 400, "seed"),
    ],
)
def test_bad_requests_get_openai_errors(
    server: Server, body: dict, status: int, param: str
) -> None:
    got, error = server.post("/v1/completions", body)
    assert got == status and set(error["error"]) == {"message", "type", "param", "code"}
    assert error["error"]["type"] == "invalid_request_error" and error["error"]["param"] == param


def test_malformed_bodies_and_chats(server: Server) -> None:
    assert http("POST", server.url + "/v1/completions", raw=b"{not json")[0] == 400
    assert http("POST", server.url + "/v1/completions", raw=b"\xff\xfe")[0] == 400
    assert server.post("/v1/completions", [1, 2])[0] == 400
    for messages in ([], [{"role": "robot", "content": "x"}], [{"role": "user"}],
                     [{"role": "system", "content": "only a system message"}]):  # fmt: skip
        status, error = server.post("/v1/chat/completions", {"messages": messages})
        assert status == 400 and error["error"]["param"].startswith("messages"), messages
    assert server.post("/v1/nothing", {})[0] == 404
    assert server.get("/health")[0] == 200  # and it still answers


def test_batched_requests_give_what_each_gives_alone(server: Server, client) -> None:
    bodies = [
        {"prompt": "First Citizen:", "max_tokens": 30, "temperature": 0},
        {
            "prompt": "KING",
            "max_tokens": 40,
            "seed": 5,
            "temperature": 1.1,
            "extra_body": {"top_k": 40, "repetition_penalty": 1.2},
        },
        {"prompt": "O", "max_tokens": 25, "seed": 9, "top_p": 0.8, "n": 2},
        {"prompt": "Thou", "max_tokens": 35, "seed": 2, "presence_penalty": 0.5},
    ]
    alone = [[c.text for c in client.completions.create(model="bard", **b).choices] for b in bodies]
    together: list = [None] * len(bodies)

    def ask(i: int) -> None:
        together[i] = [c.text for c in client.completions.create(model="bard", **bodies[i]).choices]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_a_client_that_leaves_frees_its_row(server: Server) -> None:
    body = LONG | {"max_tokens": 1000, "seed": 1}
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    payload = json.dumps(body).encode()
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload))  # fmt: skip
    received = b""
    while b"data: " not in received:  # streaming has begun
        received += sock.recv(4096)
    assert server.get("/v1/minigpt/status")[1]["rows"] == 1
    sock.close()
    status = idle(server)
    assert status["rows"] == 0 and status["waiting"] == 0
    steps = status["steps"]
    time.sleep(0.3)
    assert server.get("/v1/minigpt/status")[1]["steps"] == steps  # nothing decodes for it
    assert steps < 1000


def test_the_api_key_is_required_except_for_health(run: Path, tmp_path: Path) -> None:
    with running_server(run, "--api-key", "s3cret", tmp=tmp_path) as s:
        assert s.get("/health")[0] == 200
        status, body = s.get("/v1/models")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert s.get("/v1/models", key="wrong")[0] == 401
        assert s.get("/v1/models", key="s3cret")[0] == 200
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="wrong").models.list()
        good = openai.OpenAI(base_url=s.url + "/v1", api_key="s3cret")
        assert good.completions.create(model="bard", prompt="a", max_tokens=2).choices


def test_limits_answer_413_and_429(run: Path, tmp_path: Path) -> None:
    args = ("--max-batch", 1, "--max-queue", 1, "--max-body", 2048, "--max-tokens", 10**6)
    with running_server(run, *args, tmp=tmp_path) as s:
        status, body = s.post("/v1/completions", {"prompt": "a" * 5000})
        assert status == 413 and body["error"]["code"] == "request_too_large"
        with httpx.stream("POST", s.url + "/v1/completions", json=LONG, timeout=60) as first:
            pieces = first.iter_raw()  # kept: a dropped iterator closes the stream
            next(pieces)  # it has the only row
            results: list = []
            waiting = threading.Thread(target=lambda: results.append(
                s.post("/v1/completions", {"prompt": "a", "max_tokens": 2})))  # fmt: skip
            waiting.start()
            deadline = time.monotonic() + 60
            while s.get("/v1/minigpt/status")[1]["waiting"] < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            status, body = s.post("/v1/completions", {"prompt": "a", "max_tokens": 2})
            assert status == 429 and body["error"]["type"] == "rate_limit_error"
        waiting.join()  # the first client left: the waiting request got the row
        assert results[0][0] == 200
        assert s.get("/health")[0] == 200


def test_a_request_past_the_timeout_ends_with_504(run: Path, tmp_path: Path) -> None:
    with running_server(run, "--timeout", 2, "--max-tokens", 10**6, tmp=tmp_path) as s:
        status, body = s.post("/v1/completions", LONG | {"stream": False})
        assert status == 504 and body["error"]["code"] == "timeout"
        with httpx.stream("POST", s.url + "/v1/completions", json=LONG, timeout=60) as streamed:
            tail = streamed.read().decode()  # a stream ends with the timeout's error event
        assert '"code": "timeout"' in tail and tail.endswith("data: [DONE]\n\n")
        assert idle(s)["rows"] == 0  # its row is free


def test_health_says_loading_until_the_model_is_ready(checkpoint) -> None:
    from fastapi.testclient import TestClient

    from minigpt.serve.app import create_app
    from minigpt.serve.service import Served

    gate = threading.Event()

    def load() -> Served:
        gate.wait(30)
        return Served.start("bard", checkpoint, 2, 2)

    with TestClient(create_app(load, ServeConfig())) as local:
        assert local.get("/health").status_code == 503
        assert local.get("/health").json()["status"] == "loading"
        assert local.post("/v1/completions", json={"prompt": "a"}).status_code == 503
        gate.set()
        deadline = time.monotonic() + 30
        while local.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert local.get("/health").json() == {"status": "ok", "model": "bard"}
        assert (
            local.post("/v1/completions", json={"prompt": "a", "max_tokens": 2}).status_code == 200
        )


def test_the_inside_views_of_a_conversation(server: Server, checkpoint) -> None:
    messages = HELLO + [{"role": "assistant", "content": "Good morrow."}]
    status, inside = server.post("/v1/minigpt/inside", {"messages": messages})
    assert status == 200
    config = checkpoint.model.config
    n = len(inside["tokens"])
    assert (
        len(inside["attention"]) == config.n_layer and len(inside["attention"][0]) == config.n_head
    )
    for row_index, row in enumerate(inside["attention"][0][0]):
        assert len(row) == n and abs(sum(row) - 1) < 1e-2 and not any(row[row_index + 1 :])
    assert len(inside["lens"]["rows"]) == config.n_layer + 1
    assert len(inside["next"]["temperatures"]) == 20 and inside["next"]["top"]
    assert server.post("/v1/minigpt/inside", {"prompt": ""})[0] == 400


def test_a_port_in_use_is_one_clear_line(run: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "minigpt", "serve", "-c", str(run), "--port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr
