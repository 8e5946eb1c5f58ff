"""The day-18 server against the official OpenAI Python client (pinned in
xtask/python/requirements-openai.txt), and its SSE framing through `curl -N`.

Run by `cargo xtask serve-test`, which starts `tiny-llm-server` on 127.0.0.1
and passes BASE_URL (http://127.0.0.1:PORT) and MODEL. Prints one line per
check; exits 1 on the first failure.
"""

import json
import os
import subprocess
import sys
import time

import openai

BASE = os.environ["BASE_URL"]
MODEL = os.environ["MODEL"]
client = openai.OpenAI(base_url=BASE + "/v1", api_key="not-needed", max_retries=0, timeout=300)
CHAT = [{"role": "user", "content": "Name three colours, comma separated."}]


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}")
        sys.exit(1)
    print(f"ok   {name}")


# /v1/models
ids = [m.id for m in client.models.list().data]
check("models.list names the model", MODEL in ids, ids)

# non-streamed chat, greedy
r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=24, temperature=0)
whole = r.choices[0].message.content
check("chat: an answer", r.object == "chat.completion" and isinstance(whole, str) and whole, r)
check("chat: role assistant", r.choices[0].message.role == "assistant", r)
check("chat: finish_reason", r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
check(
    "chat: usage adds up",
    r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens and r.usage.completion_tokens <= 24,
    r.usage,
)

# streamed chat: role first, content deltas, finish_reason last, usage chunk
chunks = list(
    client.chat.completions.create(
        model=MODEL, messages=CHAT, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
)
check("stream: role first", chunks[0].choices[0].delta.role == "assistant", chunks[0])
with_choices = [c for c in chunks if c.choices]
check("stream: finish_reason only last",
      all(c.choices[0].finish_reason is None for c in with_choices[:-1])
      and with_choices[-1].choices[0].finish_reason == r.choices[0].finish_reason,
      [c.choices[0].finish_reason for c in with_choices])
streamed = "".join(c.choices[0].delta.content or "" for c in with_choices)
check("stream: text equals the non-streamed text", streamed == whole, (streamed, whole))
check("stream: usage chunk last, no choices",
      chunks[-1].choices == [] and chunks[-1].usage is not None
      and chunks[-1].usage.completion_tokens == r.usage.completion_tokens
      and all(c.usage is None for c in chunks[:-1]), chunks[-1])

# max_tokens
r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=3, temperature=0)
check("max_tokens 3: 3 tokens, length",
      r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length", r)
r = client.chat.completions.create(model=MODEL, messages=CHAT, max_completion_tokens=2, temperature=0)
check("max_completion_tokens 2", r.usage.completion_tokens == 2, r.usage)

# completions, streamed and not
prompt = "1, 2, 3, 4,"
c = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0)
check("completion: text_completion, 8 tokens",
      c.object == "text_completion" and c.usage.completion_tokens == 8 and c.choices[0].finish_reason == "length", c)
parts = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, stream=True))
check("completion stream equals the whole", "".join(p.choices[0].text for p in parts) == c.choices[0].text,
      ([p.choices[0].text for p in parts], c.choices[0].text))

# stop strings: cut before the first one, finish_reason stop
text = c.choices[0].text
check("the greedy continuation counts on", " 6" in text, text)
s = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, stop=[" 6", "zzz"])
check("stop: cut before the stop string",
      s.choices[0].text == text[: text.index(" 6")] and s.choices[0].finish_reason == "stop", (s.choices[0].text, text))
parts = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=8, temperature=0, stop=" 6", stream=True))
joined = "".join(p.choices[0].text for p in parts)
check("stop, streamed: the same text, no part of the stop", joined == s.choices[0].text
      and parts[-1].choices[0].finish_reason == "stop", (joined, s.choices[0].text))

# seed reproducibility at temperature 1
a = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=12, temperature=1.0, seed=1234)
b = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=12, temperature=1.0, seed=1234)
check("seed: same seed, same answer", a.choices[0].message.content == b.choices[0].message.content,
      (a.choices[0].message.content, b.choices[0].message.content))

# error statuses, as the client raises them
def expect(name, exc, param, **kw):
    try:
        client.chat.completions.create(model=kw.pop("model", MODEL), messages=CHAT, max_tokens=2, **kw)
    except exc as e:
        body = e.body if isinstance(e.body, dict) else {}
        got = body.get("param") if "param" in body else body.get("error", {}).get("param")
        check(name, got == param, (e.status_code, e.body))
        return
    check(name, False, "no error raised")


expect("unknown model: 404", openai.NotFoundError, "model", model="gpt-4o")
expect("n = 2: 400", openai.BadRequestError, "n", n=2)
expect("temperature 5: 400", openai.BadRequestError, "temperature", temperature=5)
expect("top_p 0.5: 400", openai.BadRequestError, "top_p", top_p=0.5)
expect("5 stop strings: 400", openai.BadRequestError, "stop", stop=["a", "b", "c", "d", "e"])

# A client that disconnects cancels its request: the server runs one
# sequence at a time (serve-test passes --max-running 1), so a short request
# after an abandoned 1500-token stream is answered at once only if the
# stream's request was cancelled (1500 tokens take minutes on this CPU).
stream = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Write a long essay about the sea."}],
    max_tokens=1500, temperature=0, stream=True,
)
for i, _ in enumerate(stream):
    if i == 2:
        break
stream.close()
t = time.time()
client.completions.create(model=MODEL, prompt="Hello", max_tokens=2, temperature=0)
took = time.time() - t
check(f"disconnect cancels: the next request took {took:.1f} s", took < 60, took)

# SSE framing, byte for byte, through curl -N
raw = subprocess.run(
    ["curl", "-sN", "--max-time", "300", BASE + "/v1/chat/completions", "-H", "Content-Type: application/json",
     "-d", json.dumps({"model": MODEL, "messages": CHAT, "max_tokens": 4, "temperature": 0, "stream": True})],
    capture_output=True, text=True, check=True,
).stdout
events = [e for e in raw.split("\n\n") if e.strip() and not e.startswith(":")]
check("curl: every event is one `data: ` line", all(e.startswith("data: ") and "\n" not in e for e in events), raw)
check("curl: ends with data: [DONE]", events[-1] == "data: [DONE]" and raw.endswith("\n\n"), raw[-80:])
check("curl: each event but the last is JSON", all(json.loads(e[6:])["object"] == "chat.completion.chunk" for e in events[:-1]), raw)
bad = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", BASE + "/v1/chat/completions", "-d", "{not json"],
                     capture_output=True, text=True).stdout
check("curl: malformed JSON is 400", bad == "400", bad)
print("all checks passed")
