"""Server-sent events as the node and the gateway stream them: shared by the Python tests."""
import json


def read_sse(response, on_event=None, strict=True):
    """Reads the `data: {...}` events of an http.client response until `data: [DONE]` or EOF.

    on_event(events) runs after each event (the list so far); when it returns True reading
    stops early. strict: every non-empty line must be a `data:` line (else AssertionError);
    otherwise other lines are skipped. Returns (events, saw_done).
    """
    events = []
    while True:
        line = response.readline()  # http.client undoes the chunked transfer coding
        if not line:
            return events, False
        line = line.rstrip(b"\r\n")
        if not line:
            continue
        if not line.startswith(b"data: "):
            assert not strict, line
            continue
        if line[6:] == b"[DONE]":
            return events, True
        events.append(json.loads(line[6:]))
        if on_event is not None and on_event(events):
            return events, False


def stream_texts(events):
    """(reasoning, text) of a stream's events: the reasoning_content deltas, and the content
    deltas (chat) or the text of the choices (completions), each concatenated."""
    r, c = "", ""
    for e in events:
        for ch in e.get("choices", []):
            d = ch.get("delta", {})
            r += d.get("reasoning_content", "") or ""
            c += d.get("content", "") or ch.get("text", "") or ""
    return r, c
