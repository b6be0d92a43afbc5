// The public API, as any client calls it: a bearer token from a token source, JSON in and out, and errors as the
// services' problem+json (RFC 9457) thrown as `Problem`.

export class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    // The services name the problem in `type` (/problems/<code>).
    const named = typeof body.type === "string" && body.type.startsWith("/problems/");
    this.code = body.code || (named ? body.type.slice("/problems/".length) : null);
    this.title = body.title || "";
    this.body = body;
  }
}

export function requestId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context; a shop LAN may not be
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// What a JWT says (its claims), read without checking it: the server checks every token it is sent; a page only
// reads who it is for (role, stores, the order a tracking link names). Throws on what is not a JWT.
export function tokenClaims(jwt) {
  const part = (jwt.split(".")[1] || "").replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(decodeURIComponent(escape(atob(part))));
}

// tokens: { get(): Promise<string|null>, renew(): Promise<boolean> } (a session, or a tracking link's exchange).
export class Api {
  constructor(tokens) {
    this.tokens = tokens;
  }

  async request(method, path, { body, query, headers = {} } = {}) {
    const url = query ? `${path}?${new URLSearchParams(clean(query))}` : path;
    let response = await this.send(method, url, body, headers);
    if (response.status === 401 && (await this.tokens.renew())) response = await this.send(method, url, body, headers);
    if (response.status === 204) return null;
    const type = response.headers.get("content-type") || "";
    const payload = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) throw new Problem(response.status, typeof payload === "object" ? payload : { detail: payload });
    return payload;
  }

  async send(method, url, body, headers) {
    const token = await this.tokens.get();
    const sent = { ...headers };
    if (token) sent.authorization = `Bearer ${token}`;
    if (body !== undefined) sent["content-type"] = "application/json";
    // A retried POST (a flaky shop Wi-Fi) must not act twice: services that take a key dedupe on it.
    if (method === "POST" && !sent["idempotency-key"]) sent["idempotency-key"] = requestId();
    return fetch(url, { method, headers: sent, body: body === undefined ? undefined : JSON.stringify(body) });
  }

  get(path, query) {
    return this.request("GET", path, { query });
  }
  post(path, body = {}, headers) {
    return this.request("POST", path, { body, headers });
  }
  put(path, body) {
    return this.request("PUT", path, { body });
  }
  patch(path, body) {
    return this.request("PATCH", path, { body });
  }
  delete(path) {
    return this.request("DELETE", path);
  }
}

function clean(query) {
  return Object.fromEntries(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== ""));
}
