"""A fake OpenAI chat-completions upstream for the peer checks: a real HTTP
server speaking OpenAI's wire format (whole answers and SSE streams). With
tools offered and no tool result yet, it asks for a call of the first tool
("get_weather" with the city the user named; "delete_files" when the user
asks to clean up); with a tool result last, it answers with it. Prints its
port, then serves until killed."""

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer(body):
    messages = body.get("messages", [])
    last = messages[-1] if messages else {}
    if last.get("role") == "tool" or not body.get("tools"):
        return {"text": f"Here is what the tool said: {last.get('content', 'nothing')}"}
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if "clean up" in str(user):
        return {"call": ("delete_files", json.dumps({"path": "/"}))}
    city = re.search(r"in ([A-Z][a-z]+)", str(user))
    return {"call": ("get_weather", json.dumps({"city": city.group(1) if city else "Paris"}))}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        a = answer(body)
        if body.get("stream"):
            self.stream(a)
        else:
            self.whole(a)

    def whole(self, a):
        if "call" in a:
            name, args = a["call"]
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}]}
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": a["text"]}, "stop"
        data = json.dumps({"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
                           "choices": [{"index": 0, "message": message, "finish_reason": finish}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stream(self, a):
        def chunk(delta, finish=None):
            return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        events = [chunk({"role": "assistant", "content": ""})]
        if "call" in a:
            name, args = a["call"]
            events.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            events.append(chunk({}, "tool_calls"))
        else:
            for i, word in enumerate(a["text"].split(" ")):
                events.append(chunk({"content": word if i == 0 else " " + word}))
            events.append(chunk({}, "stop"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for e in events:
            self.wfile.write(f"data: {json.dumps(e)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
