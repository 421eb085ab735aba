// Afterimage console: reads the lookup API with fetch and a bearer token. No framework, no build step.
// The token lives in sessionStorage (this tab only) and goes out only in the Authorization header.
// Everything from the API is put on the page as text (textContent), never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "afterimage.token";
  const PAGE_SIZE = 24;
  const HEALTH_EVERY_MS = 5000;
  const byId = (id) => document.getElementById(id);

  let token = sessionStorage.getItem(TOKEN_KEY);
  let healthTimer = null;
  let healthBusy = false;

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  /** Calls the API with the token; throws ApiError with the API's own code and message. */
  async function api(path, options) {
    const method = (options && options.method) || "GET";
    const bearer = (options && options.token) || token;
    let response;
    try {
      response = await fetch(path, {
        method: method,
        headers: { "Authorization": "Bearer " + bearer, "Accept": "application/json" },
        cache: "no-store",
        credentials: "omit",
        redirect: "error",
        referrerPolicy: "no-referrer",
      });
    } catch (err) {
      throw new ApiError(0, "network", "the daemon did not answer (" + err.message + ")");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.error ? body.error : {};
      throw new ApiError(response.status, detail.code || "http_" + response.status, detail.message || response.statusText);
    }
    return body;
  }

  /** What to do with an error in a signed-in view: a refused token signs out, anything else is shown. */
  function report(err) {
    if (err instanceof ApiError && err.status === 401) {
      signOut("The token was refused (" + err.code + "): sign in again.");
      return;
    }
    notice(err.message || String(err), true);
  }

  // ---------------------------------------------------------------- small helpers

  function el(tag, attributes, children) {
    const node = document.createElement(tag);
    if (attributes) {
      for (const [name, value] of Object.entries(attributes)) {
        if (value === null || value === undefined || value === false) continue;
        if (name === "text") node.textContent = value;
        else if (name === "className") node.className = value;
        else node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children || []) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function notice(text, bad) {
    const box = byId("notice");
    box.textContent = text || "";
    box.classList.toggle("bad", Boolean(bad));
    box.hidden = !text;
  }

  function when(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return isNaN(date.getTime()) ? iso : date.toLocaleString();
  }

  function timeElement(iso) {
    if (!iso) return document.createTextNode("–");
    return el("time", { datetime: iso, title: iso, text: when(iso) });
  }

  function relative(iso) {
    const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
    const magnitude = Math.abs(seconds);
    const text = magnitude < 90 ? magnitude + " s" : magnitude < 5400 ? Math.round(magnitude / 60) + " min"
      : Math.round(magnitude / 3600) + " h";
    return seconds >= 0 ? "in " + text : text + " ago";
  }

  function size(bytes) {
    if (bytes === null || bytes === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit] + (unit === 0 ? "" : " (" + bytes + " B)");
  }

  function predictionLink(provider, id) {
    return "#/p/" + encodeURIComponent(provider) + "/" + encodeURIComponent(id);
  }

  function stateBadge(state) {
    return el("span", { className: "badge state-" + state, text: state.replace("_", " ") });
  }

  function altText(asset) {
    return asset.provider + "/" + asset.prediction_id + " output " + asset.index;
  }

  /** The stored output as an image, a player or a file link; a labelled placeholder otherwise. */
  function media(asset) {
    const type = asset.content_type || "";
    if (asset.state === "stored" && asset.url) {
      if (type.startsWith("image/")) {
        return el("div", { className: "frame" }, [
          el("img", { src: asset.url, alt: altText(asset), loading: "lazy", decoding: "async" }),
        ]);
      }
      if (type.startsWith("video/")) {
        return el("div", { className: "frame" }, [
          el("video", { src: asset.url, controls: true, preload: "metadata", "aria-label": altText(asset) }),
        ]);
      }
      if (type.startsWith("audio/")) {
        return el("div", { className: "frame audio" }, [
          el("audio", { src: asset.url, controls: true, preload: "none", "aria-label": altText(asset) }),
        ]);
      }
      return el("div", { className: "frame" }, [
        el("div", { className: "placeholder" }, [stateBadge("stored"), el("span", { text: type || "file" })]),
      ]);
    }
    const reason = asset.failure_reason ||
      (asset.state === "pending" ? "waiting to be archived" : asset.state === "in_flight" ? "being archived now" : "");
    return el("div", { className: "frame" }, [
      el("div", { className: "placeholder", role: "img", "aria-label": altText(asset) + ": " + asset.state + (reason ? ", " + reason : "") }, [
        stateBadge(asset.state),
        reason ? el("span", { className: "reason", text: reason }) : null,
      ]),
    ]);
  }

  // ---------------------------------------------------------------- sign-in

  function showSignedIn(signedIn) {
    byId("nav").hidden = !signedIn;
    byId("sign-out").hidden = !signedIn;
    byId("health").hidden = !signedIn;
  }

  function signOut(message) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (healthTimer !== null) {
      clearInterval(healthTimer);
      healthTimer = null;
    }
    showSignedIn(false);
    notice("");
    showView("signin");
    const error = byId("signin-error");
    error.textContent = message || "";
    error.hidden = !message;
    byId("token").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const input = byId("token");
    const candidate = input.value.trim();
    const error = byId("signin-error");
    error.hidden = true;
    if (!candidate) return;
    const button = event.target.querySelector("button");
    button.disabled = true;
    try {
      // Any bearer route checks the token; the health figures are wanted next anyway.
      const stats = await api("/v1/stats", { token: candidate });
      token = candidate;
      sessionStorage.setItem(TOKEN_KEY, token);
      input.value = "";
      startSession(stats);
    } catch (err) {
      error.textContent = err.status === 401
        ? "That token is not valid (" + err.code + "). Use one of the tokens in api.tokens."
        : "Could not sign in: " + err.message;
      error.hidden = false;
      input.focus();
      input.select();
    } finally {
      button.disabled = false;
    }
  }

  function startSession(stats) {
    showSignedIn(true);
    if (stats) renderHealth(stats);
    else refreshHealth();
    if (healthTimer === null) healthTimer = setInterval(refreshHealth, HEALTH_EVERY_MS);
    if (!location.hash || location.hash === "#/" || location.hash === "#/signin") location.hash = "#/gallery";
    else route();
  }

  // ---------------------------------------------------------------- health strip

  async function refreshHealth() {
    if (healthBusy || !token) return;
    healthBusy = true;
    try {
      renderHealth(await api("/v1/stats"));
    } catch (err) {
      if (err.status === 401) report(err);
      else byId("health-updated").textContent = "Health figures unavailable: " + err.message;
    } finally {
      healthBusy = false;
    }
  }

  function renderHealth(stats) {
    for (const node of byId("health").querySelectorAll("[data-stat]")) {
      const name = node.dataset.stat;
      const value = stats[name];
      node.className = "";
      if (name === "earliest_deadline") {
        node.textContent = value ? relative(value) : "none";
        node.title = value ? when(value) : "";
        if (value && new Date(value).getTime() < Date.now()) node.className = "bad";
      } else {
        node.textContent = value === null || value === undefined ? "?" : String(value);
        if ((name === "failed" || name === "expired" || name === "deadline_misses_today") && value > 0) node.className = "warn";
      }
    }
    for (const node of byId("health").querySelectorAll("[data-check]")) {
      const check = stats.checks ? stats.checks[node.dataset.check] : null;
      const ok = check === "ok";
      node.textContent = ok ? "ready" : "unavailable";
      node.title = ok ? "" : String(check);
      node.className = ok ? "ok" : "bad";
    }
    byId("health-updated").textContent = "Updated " + new Date().toLocaleTimeString() + "; every 5 s.";
  }

  // ---------------------------------------------------------------- gallery

  const gallery = { next: null, loading: false };

  function galleryQuery() {
    const parameters = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const provider = byId("filter-provider").value;
    const status = byId("filter-status").value;
    if (provider) parameters.set("provider", provider);
    if (status) parameters.set("status", status);
    if (gallery.next) parameters.set("before", gallery.next);
    return "/v1/predictions?" + parameters.toString();
  }

  async function loadGallery(reset) {
    if (gallery.loading) return;
    gallery.loading = true;
    const grid = byId("grid");
    const more = byId("gallery-more");
    if (reset) gallery.next = null;
    more.disabled = true;
    try {
      const page = await api(galleryQuery());
      if (reset) grid.replaceChildren();
      for (const prediction of page.predictions) {
        for (const tile of tiles(prediction)) grid.append(tile);
      }
      gallery.next = page.next_before;
      more.hidden = !gallery.next;
      byId("gallery-empty").hidden = grid.childElementCount > 0;
    } catch (err) {
      report(err);
    } finally {
      gallery.loading = false;
      more.disabled = false;
    }
  }

  function tiles(prediction) {
    const link = predictionLink(prediction.provider, prediction.id);
    const title = prediction.provider + "/" + prediction.id;
    if (prediction.assets.length === 0) {
      const label = prediction.status === "succeeded" ? "no outputs" : prediction.error || "no outputs yet";
      return [el("figure", { className: "tile" }, [
        el("div", { className: "frame" }, [
          el("div", { className: "placeholder", role: "img", "aria-label": title + ": " + prediction.status + ", " + label }, [
            el("span", { className: "badge", text: prediction.status }),
            el("span", { className: "reason", text: label }),
          ]),
        ]),
        el("figcaption", null, [el("a", { href: link, title: title, text: title })]),
      ])];
    }
    return prediction.assets.map((asset) => el("figure", { className: "tile", "data-asset": asset.id }, [
      media(asset),
      el("figcaption", null, [
        el("a", { href: link, title: title, text: title }),
        el("span", null, [stateBadge(asset.state), document.createTextNode(" output " + asset.index + " · " + prediction.status)]),
      ]),
    ]));
  }

  // ---------------------------------------------------------------- prediction view

  async function loadPrediction(provider, id) {
    const title = byId("prediction-title");
    title.textContent = provider + "/" + id;
    const fields = byId("prediction-fields");
    const outputs = byId("prediction-outputs");
    fields.replaceChildren();
    outputs.replaceChildren(el("p", { className: "muted", text: "Loading…" }));
    byId("prediction-input").textContent = "";
    let prediction;
    try {
      prediction = await api("/v1/predictions/" + encodeURIComponent(provider) + "/" + encodeURIComponent(id));
    } catch (err) {
      outputs.replaceChildren(el("p", { className: "error", text: err.message }));
      if (err.status === 401) report(err);
      return;
    }
    const rows = [
      ["Status", prediction.status], ["Model", prediction.model || "–"], ["Version", prediction.version || "–"],
      ["Error", prediction.error || "–"], ["Created", timeElement(prediction.created_at)],
      ["Started", timeElement(prediction.started_at)], ["Completed", timeElement(prediction.completed_at)],
      ["First seen here", timeElement(prediction.first_seen_at)], ["Updated", timeElement(prediction.updated_at)],
      ["Provider data removed", prediction.data_removed ? "yes" : "no"],
    ];
    for (const [name, value] of rows) fields.append(el("dt", { text: name }), el("dd", null, [value]));
    byId("prediction-input").textContent = JSON.stringify(prediction.input, null, 2);
    outputs.replaceChildren();
    if (prediction.assets.length === 0) outputs.append(el("p", { className: "muted", text: "No outputs." }));
    for (const asset of prediction.assets) outputs.append(outputCard(prediction, asset));
  }

  function outputCard(prediction, asset) {
    const details = el("dl", { className: "fields" });
    const rows = [
      ["State", stateBadge(asset.state)], ["Size", size(asset.size)], ["SHA-256", el("code", { text: asset.sha256 || "–" })],
      ["Content type", asset.content_type || "–"], ["Key", el("code", { text: asset.key || "–" })],
      ["Tries", String(asset.attempts)], ["Stored", timeElement(asset.stored_at)],
    ];
    if (asset.failure_reason) rows.push(["Reason", asset.failure_reason]);
    if (asset.finish_reason) rows.push(["Finish reason", asset.finish_reason]);
    for (const [name, value] of rows) details.append(el("dt", { text: name }), el("dd", null, [value]));
    const actions = el("div", { className: "actions" });
    if (asset.state === "stored" && asset.url) {
      actions.append(
        el("a", { className: "button", href: asset.url, target: "_blank", rel: "noopener noreferrer", text: "Open" }),
        button("Download", () => download(prediction, asset)),
        button("Copy URL", (event) => copyURL(prediction, asset, actions, event.target)));
    }
    if (asset.state === "failed" || asset.state === "expired") {
      actions.append(button("Retry", (event) => retry(asset.id, event.target, (updated) => {
        outputs().replaceChild(outputCard(prediction, updated), card);
      })));
    }
    const card = el("article", { className: "output", "aria-label": "Output " + asset.index }, [
      media(asset), el("div", null, [el("h3", { text: "Output " + asset.index }), details, actions]),
    ]);
    return card;
  }

  function outputs() { return byId("prediction-outputs"); }

  function button(text, onClick, className) {
    const node = el("button", { type: "button", className: className || "small", text: text });
    node.addEventListener("click", onClick);
    return node;
  }

  function outputURLPath(prediction, asset, download) {
    const parameters = new URLSearchParams();
    if (download) parameters.set("download", download);
    const query = parameters.toString();
    return "/v1/predictions/" + encodeURIComponent(prediction.provider) + "/" + encodeURIComponent(prediction.id) +
      "/outputs/" + asset.index + "/url" + (query ? "?" + query : "");
  }

  function fileName(prediction, asset) {
    const last = asset.key ? asset.key.split("/").pop() : "";
    return (prediction.id + "-" + (last || String(asset.index))).replace(/[\\/\u0000-\u001f]/g, "_").slice(0, 200);
  }

  async function download(prediction, asset) {
    try {
      const signed = await api(outputURLPath(prediction, asset, fileName(prediction, asset)));
      // The bucket answers with Content-Disposition: attachment, so this saves the file and stays here.
      const link = el("a", { href: signed.url, rel: "noopener noreferrer" });
      document.body.append(link);
      link.click();
      link.remove();
    } catch (err) {
      report(err);
    }
  }

  async function copyURL(prediction, asset, actions, source) {
    try {
      const signed = await api(outputURLPath(prediction, asset, null));
      let copied = false;
      try {
        if (navigator.clipboard) {
          // Some browsers leave the promise pending without a user gesture they accept: give up after 1 s.
          const timeout = new Promise((resolve, reject) => setTimeout(() => reject(new Error("timeout")), 1000));
          await Promise.race([navigator.clipboard.writeText(signed.url), timeout]);
          copied = true;
        }
      } catch (err) {
        copied = false;
      }
      const old = actions.querySelector("input.copied");
      if (old) old.remove();
      const field = el("input", { className: "copied", readonly: true, value: signed.url, "aria-label": "Presigned URL" });
      actions.append(field);
      source.textContent = copied ? "Copied" : "Copy URL";
      if (!copied) {
        field.focus();
        field.select();
      }
      notice(copied ? "A fresh URL, valid until " + when(signed.url_expires_at) + ", is on the clipboard."
        : "Select and copy the URL below; it is valid until " + when(signed.url_expires_at) + ".");
    } catch (err) {
      report(err);
    }
  }

  // ---------------------------------------------------------------- failures

  const failureLists = {
    failed: { next: null, loading: false },
    expired: { next: null, loading: false },
  };

  async function loadFailures(state, reset) {
    const list = failureLists[state];
    if (list.loading) return;
    list.loading = true;
    const body = byId(state + "-table").tBodies[0];
    const more = byId(state + "-more");
    if (reset) list.next = null;
    try {
      const parameters = new URLSearchParams({ state: state, limit: "50" });
      if (list.next !== null) parameters.set("after", String(list.next));
      const page = await api("/v1/assets?" + parameters.toString());
      if (reset) body.replaceChildren();
      for (const asset of page.assets) body.append(failureRow(asset));
      list.next = page.next_after;
      more.hidden = list.next === null;
      byId(state + "-empty").hidden = body.childElementCount > 0;
      byId(state + "-table").parentElement.hidden = body.childElementCount === 0;
    } catch (err) {
      report(err);
    } finally {
      list.loading = false;
    }
  }

  function failureRow(asset) {
    const stateCell = el("td", { "data-label": "State", className: "state" }, [stateBadge(asset.state)]);
    const reasonCell = el("td", { className: "reason", "data-label": "Reason", text: asset.failure_reason || "–" });
    const action = el("td");
    const row = el("tr", { "data-asset": asset.id }, [
      el("td", { "data-label": "Asset", text: String(asset.id) }),
      el("td", { "data-label": "Prediction" }, [
        el("a", { href: predictionLink(asset.provider, asset.prediction_id), text: asset.provider + "/" + asset.prediction_id }),
        document.createTextNode(" #" + asset.index),
      ]),
      stateCell,
      el("td", { "data-label": "Tries", text: String(asset.attempts) }),
      reasonCell,
      el("td", { "data-label": "Updated" }, [timeElement(asset.updated_at)]),
      action,
    ]);
    if (asset.state === "failed" || asset.state === "expired") {
      action.append(button("Retry", (event) => retry(asset.id, event.target, (updated) => {
        stateCell.replaceChildren(stateBadge(updated.state));
        reasonCell.textContent = "re-queued: tries reset, due now";
      }), "small"));
    }
    return row;
  }

  async function retry(id, source, onDone) {
    source.disabled = true;
    source.textContent = "Retrying…";
    try {
      const updated = await api("/v1/assets/" + encodeURIComponent(String(id)) + "/retry", { method: "POST" });
      source.textContent = "Queued";
      notice("Asset " + id + " is " + updated.state.replace("_", " ") + " again.");
      onDone(updated);
      refreshHealth();
    } catch (err) {
      source.disabled = false;
      source.textContent = "Retry";
      report(err);
    }
  }

  // ---------------------------------------------------------------- views and routing

  const views = ["signin", "gallery", "prediction", "failures"];

  function showView(name) {
    for (const view of views) byId("view-" + view).hidden = view !== name;
    for (const link of byId("nav").querySelectorAll("a")) {
      if (link.dataset.view === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = (name === "signin" ? "Sign in" : name.charAt(0).toUpperCase() + name.slice(1)) + " · Afterimage";
  }

  let lastRoute = null;

  function route() {
    if (!token) {
      showView("signin");
      byId("token").focus();
      return;
    }
    const hash = location.hash || "#/gallery";
    const parts = hash.slice(2).split("/");
    let view = parts[0];
    if (view === "p" && parts.length >= 3) {
      showView("prediction");
      let provider;
      let id;
      try {
        provider = decodeURIComponent(parts[1]);
        id = decodeURIComponent(parts.slice(2).join("/"));
      } catch (err) {
        notice("That address does not name a prediction.", true);
        return;
      }
      loadPrediction(provider, id);
    } else if (view === "failures") {
      showView("failures");
      loadFailures("failed", true);
      loadFailures("expired", true);
    } else {
      view = "gallery";
      showView("gallery");
      if (lastRoute !== "gallery" || byId("grid").childElementCount === 0) loadGallery(true);
    }
    if (lastRoute !== null && lastRoute !== hash) {
      const heading = document.querySelector("section:not([hidden]) h1");
      if (heading) heading.focus();
    }
    lastRoute = view === "gallery" ? "gallery" : hash;
  }

  function start() {
    byId("signin-form").addEventListener("submit", signIn);
    byId("sign-out").addEventListener("click", () => signOut(""));
    byId("gallery-more").addEventListener("click", () => loadGallery(false));
    byId("failed-more").addEventListener("click", () => loadFailures("failed", false));
    byId("expired-more").addEventListener("click", () => loadFailures("expired", false));
    byId("filters").addEventListener("submit", (event) => event.preventDefault());
    for (const id of ["filter-provider", "filter-status"]) byId(id).addEventListener("change", () => loadGallery(true));
    window.addEventListener("hashchange", () => {
      notice("");
      route();
    });
    if (token) startSession(null);
    else signOut("");
  }

  start();
})();
