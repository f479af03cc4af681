// Talking to Gatehouse: the management API under /mcp-admin/api and the sign-in endpoints under /auth.
// Every write carries the page's CSRF token (the session cookie alone is not enough for a change).

let csrfToken = '';
let onSignedOut = () => {};

export function setCsrfToken(token) { csrfToken = token || ''; }
export function onUnauthorized(fn) { onSignedOut = fn; }

/** An error from the API, with a message written for people. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function friendly(status, code, message) {
  if (code === 'csrf') return 'Your session\'s security token is out of date. Reload the page and try again.';
  if (status === 0) return 'Gatehouse could not be reached. Check your network connection and try again.';
  if (status === 401) return 'You are signed out. Sign in again to continue.';
  if (status === 403) return message || 'You do not have permission to do this.';
  if (status === 429) return 'Too many requests right now. Wait a moment and try again.';
  if (status === 503) return message || 'Gatehouse\'s database is unavailable. Try again in a minute.';
  if (status >= 500) return `Gatehouse had a problem (${status}). Try again; if it keeps happening, tell the team that runs Gatehouse.`;
  return message || `The request failed (${status}).`;
}

/** fetch() with JSON in and out; throws ApiError with a readable message. */
export async function request(method, url, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let res;
  try {
    res = await fetch(url, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', friendly(0));
  }
  const text = await res.text();
  let data;
  try { data = text ? JSON.parse(text) : undefined; } catch { data = text; }
  if (!res.ok) {
    const code = data?.error?.code ?? 'error';
    const message = data?.error?.message ?? '';
    // A write that was refused is reported as such, so the page can keep what the admin typed.
    if (res.status === 401 && !url.startsWith('/auth/')) onSignedOut({ write: method !== 'GET' && method !== 'HEAD' });
    const err = new ApiError(res.status, code, friendly(res.status, code, message));
    err.data = data;
    throw err;
  }
  return data === undefined ? true : data; // 204 No Content: success, nothing to read
}

const enc = encodeURIComponent;
const API = '/mcp-admin/api';

/** Query string from an object, skipping empty values. */
export function qs(params) {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${enc(k)}=${enc(v)}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

export const api = {
  me: () => request('GET', '/auth/me'),
  signInWithKey: (apiKey) => request('POST', '/auth/session', { api_key: apiKey }),
  signOut: () => fetch('/auth/logout', {
    method: 'POST', headers: { 'X-CSRF-Token': csrfToken }, credentials: 'same-origin', redirect: 'manual',
  }).catch(() => {}),

  users: (q, page, perPage) => request('GET', `${API}/users${qs({ q, page, per_page: perPage })}`),
  user: (email) => request('GET', `${API}/users/${enc(email)}`),
  createUser: (body) => request('POST', `${API}/users`, body),
  updateUser: (email, patch) => request('PATCH', `${API}/users/${enc(email)}`, patch),

  groups: (q, page, perPage) => request('GET', `${API}/groups${qs({ q, page, per_page: perPage })}`),
  group: (name) => request('GET', `${API}/groups/${enc(name)}`),
  createGroup: (body) => request('POST', `${API}/groups`, body),
  deleteGroup: (name) => request('DELETE', `${API}/groups/${enc(name)}`),
  members: (name, page, perPage) => request('GET', `${API}/groups/${enc(name)}/members${qs({ page, per_page: perPage })}`),
  addMembers: (name, emails) => request('POST', `${API}/groups/${enc(name)}/members`, { emails }),
  addMember: (name, email) => request('PUT', `${API}/groups/${enc(name)}/members/${enc(email)}`),
  removeMember: (name, email) => request('DELETE', `${API}/groups/${enc(name)}/members/${enc(email)}`),

  grants: (group) => request('GET', `${API}/groups/${enc(group)}/servers`),
  putGrant: (group, server, tools) => request('PUT', `${API}/groups/${enc(group)}/servers/${enc(server)}`, { tools }),
  deleteGrant: (group, server) => request('DELETE', `${API}/groups/${enc(group)}/servers/${enc(server)}`),

  servers: () => request('GET', `${API}/servers`),

  tenantKeys: (group) => request('GET', `${API}/tenants/${enc(group)}/keys`),
  putTenantKey: (group, server, slot, value) =>
    request('PUT', `${API}/tenants/${enc(group)}/keys/${enc(server)}/${enc(slot)}`, { value }),
  deleteTenantKey: (group, server, slot) =>
    request('DELETE', `${API}/tenants/${enc(group)}/keys/${enc(server)}/${enc(slot)}`),

  endpoints: (group) => request('GET', `${API}/tenants/${enc(group)}/endpoints`),
  putEndpoint: (group, server, url) => request('PUT', `${API}/tenants/${enc(group)}/endpoints/${enc(server)}`, { url }),
  deleteEndpoint: (group, server) => request('DELETE', `${API}/tenants/${enc(group)}/endpoints/${enc(server)}`),

  apiKeys: (user, page, perPage) => request('GET', `${API}/apikeys${qs({ user, page, per_page: perPage })}`),
  createApiKey: (body) => request('POST', `${API}/apikeys`, body),
  revokeApiKey: (id) => request('DELETE', `${API}/apikeys/${enc(id)}`),

  analytics: (params) => request('GET', `${API}/analytics${qs(params)}`),
  audit: (params) => request('GET', `${API}/audit${qs(params)}`),
};
