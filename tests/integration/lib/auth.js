// Default credentials for requests to a gateway the harness started.
// startGatehouse() registers its origin (http://127.0.0.1:PORT) with the bootstrap admin's
// `Authorization: Bearer gh_…` header; the request helpers (connectClient, rawRequest, rawSession,
// getJson) add it to every request to that origin unless the caller
//   - passes its own `authorization` header (any case; a null/undefined value means "send none"), or
//   - passes `auth: false` (anonymous request).
const byOrigin = new Map(); // origin → () => headers object

function originOf(url) {
  try { return new URL(url).origin; } catch { return null; }
}

/** Registers (or replaces) the default headers for a gateway origin; returns an unregister function. */
export function registerGatewayAuth(url, headersFn) {
  const origin = originOf(url);
  if (!origin) return () => {};
  byOrigin.set(origin, headersFn);
  return () => { if (byOrigin.get(origin) === headersFn) byOrigin.delete(origin); };
}

/** The default auth headers for `url` ({} when none is registered or the gateway has no admin key). */
export function defaultAuthHeaders(url) {
  const fn = byOrigin.get(originOf(url));
  return fn ? { ...fn() } : {};
}

function hasHeader(headers, name) {
  return Object.keys(headers ?? {}).some((h) => h.toLowerCase() === name);
}

/**
 * `headers` with the default credentials of the gateway at `url` added (see the top of this file).
 * Header entries whose value is null or undefined are dropped.
 */
export function withAuth(url, headers = {}, { auth = true } = {}) {
  const merged = {};
  if (auth && !hasHeader(headers, 'authorization')) Object.assign(merged, defaultAuthHeaders(url));
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value !== undefined && value !== null) merged[name] = value;
  }
  return merged;
}

/** `Authorization: Bearer <token>` as a headers object. */
export function bearer(token) {
  return { authorization: `Bearer ${token}` };
}
