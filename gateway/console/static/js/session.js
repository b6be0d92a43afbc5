// A staff member's sign-in: the access token and the rotating refresh token from POST /v1/auth/sign-in, kept in this
// tab's sessionStorage (gone when the tab closes; never in a cookie the browser would send by itself). The access
// token is renewed a minute before it expires, once for every caller waiting (a refresh token works only once).

import { tokenClaims } from "./api.js";

const KEY = "songda.console.session";
const EARLY_MS = 60_000;

export class Session {
  constructor() {
    this.state = JSON.parse(sessionStorage.getItem(KEY) || "null");
    this.renewing = null;
    this.onEnd = () => {};
  }

  get signedIn() {
    return this.state !== null;
  }

  // What the token says about its holder: role, merchant_id, store_ids (empty: every store of the merchant).
  get claims() {
    return this.state ? tokenClaims(this.state.access_token) : null;
  }

  async signIn(login, password) {
    const response = await fetch("/v1/auth/sign-in", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ login, password }),
    });
    const body = await response.json();
    if (!response.ok) throw Object.assign(new Error(body.detail || body.title), { status: response.status, body });
    this.keep(body);
  }

  keep(body) {
    this.state = {
      access_token: body.access_token,
      refresh_token: body.refresh_token,
      expires_at: Date.now() + body.expires_in * 1000,
    };
    sessionStorage.setItem(KEY, JSON.stringify(this.state));
  }

  async get() {
    if (this.state && Date.now() > this.state.expires_at - EARLY_MS) await this.renew();
    return this.state ? this.state.access_token : null;
  }

  renew() {
    if (!this.state) return Promise.resolve(false);
    this.renewing ??= this.refresh().finally(() => (this.renewing = null));
    return this.renewing;
  }

  async refresh() {
    const response = await fetch("/v1/auth/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: this.state.refresh_token }),
    });
    if (!response.ok) {
      this.forget();
      return false;
    }
    this.keep(await response.json());
    return true;
  }

  async signOut() {
    if (this.state) {
      await fetch("/v1/auth/sign-out", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ refresh_token: this.state.refresh_token }),
      }).catch(() => {});
    }
    this.forget();
  }

  forget() {
    this.state = null;
    sessionStorage.removeItem(KEY);
    this.onEnd();
  }
}
