// Following a live stream (Server-Sent Events) over fetch rather than EventSource, which can send neither an
// Authorization header nor a Last-Event-ID of our choosing. Entries are parsed as the SSE standard says (event, data,
// id, retry; comments are keep-alives); after a dropped connection it reconnects with backoff and resumes after the
// last entry it saw, so nothing is missed and nothing is shown twice. It stops on `end`, on close(), when the
// stream is refused (403/404) or its token source refuses (401/403), and renews the token once on a 401.

export function follow(path, { tokens, onEntry, onState = () => {}, lastEventId = null }) {
  const stream = new Stream(path, tokens, onEntry, onState, lastEventId);
  stream.run();
  return stream;
}

const MAX_BACKOFF_MS = 15_000;
// No byte for this long (the server pings every 10 s): the connection is dead even if the socket says otherwise.
const SILENCE_MS = 30_000;

class Stream {
  constructor(path, tokens, onEntry, onState, lastEventId) {
    this.path = path;
    this.tokens = tokens;
    this.onEntry = onEntry;
    this.onState = onState;
    this.lastEventId = lastEventId;
    this.retryMs = 1000;
    this.closed = false;
    this.controller = null;
  }

  close() {
    this.closed = true;
    this.controller?.abort();
    this.onState("closed");
  }

  async run() {
    let failures = 0;
    let renewed = false;
    while (!this.closed) {
      this.onState(failures ? "reconnecting" : "connecting");
      let outcome;
      try {
        outcome = await this.connect();
      } catch (error) {
        outcome = this.closed ? "closed" : "dropped";
      }
      if (outcome === "ended" || this.closed) {
        if (!this.closed) this.onState("ended");
        return;
      }
      if (outcome === "unauthorized" && !renewed) {
        renewed = await this.tokens.renew();
        if (renewed) continue;
      }
      if (outcome === "refused" || outcome === "unauthorized") {
        this.onState("refused");
        return;
      }
      if (outcome === "opened") {
        failures = 0;
        renewed = false;
      }
      failures += 1;
      const wait = Math.min(this.retryMs * 2 ** Math.min(failures - 1, 4), MAX_BACKOFF_MS);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  async connect() {
    this.controller = new AbortController();
    const headers = { accept: "text/event-stream" };
    let token;
    try {
      token = await this.tokens.get();
    } catch (error) {
      // The token source said no (a signed-out session, an expired tracking link): no retry can change that.
      if (error && (error.status === 401 || error.status === 403)) return "refused";
      throw error;
    }
    if (token) headers.authorization = `Bearer ${token}`;
    if (this.lastEventId !== null) headers["last-event-id"] = this.lastEventId;
    const response = await fetch(this.path, { headers, signal: this.controller.signal, cache: "no-store" });
    if (response.status === 401) return "unauthorized";
    if (response.status === 403 || response.status === 404) return "refused";
    if (!response.ok || !response.body) return "dropped";
    this.onState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let entry = blank();
    let watchdog = this.watch();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "opened";
        clearTimeout(watchdog);
        watchdog = this.watch();
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            if (this.dispatch(entry) === "end") return "ended";
            entry = blank();
          } else {
            field(entry, line, this);
          }
        }
      }
    } finally {
      clearTimeout(watchdog);
    }
  }

  watch() {
    return setTimeout(() => this.controller.abort(), SILENCE_MS);
  }

  dispatch(entry) {
    if (entry.id !== null) this.lastEventId = entry.id;
    if (!entry.data.length) return null;
    const type = entry.event || "message";
    let data = entry.data.join("\n");
    try {
      data = JSON.parse(data);
    } catch {
      // not JSON: handed over as text
    }
    this.onEntry({ type, id: entry.id, data });
    return type === "end" ? "end" : null;
  }
}

function blank() {
  return { event: "", data: [], id: null };
}

function field(entry, line, stream) {
  if (line.startsWith(":")) return; // a comment: the keep-alive ping
  const colon = line.indexOf(":");
  const name = colon < 0 ? line : line.slice(0, colon);
  let value = colon < 0 ? "" : line.slice(colon + 1);
  if (value.startsWith(" ")) value = value.slice(1);
  if (name === "event") entry.event = value;
  else if (name === "data") entry.data.push(value);
  else if (name === "id" && !value.includes("\0")) entry.id = value;
  else if (name === "retry" && /^\d+$/.test(value)) stream.retryMs = Number(value);
}
