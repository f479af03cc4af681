// The real MCP SDK client against the gateway, plus small helpers on top of it.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  LoggingMessageNotificationSchema,
  McpError,
  PromptListChangedNotificationSchema,
  ResourceListChangedNotificationSchema,
  ResourceUpdatedNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { withAuth } from './auth.js';

const REQUEST_SCHEMAS = {
  'sampling/createMessage': CreateMessageRequestSchema,
  'elicitation/create': ElicitRequestSchema,
  'roots/list': ListRootsRequestSchema,
};

const NOTIFICATION_SCHEMAS = {
  'notifications/message': LoggingMessageNotificationSchema,
  'notifications/tools/list_changed': ToolListChangedNotificationSchema,
  'notifications/prompts/list_changed': PromptListChangedNotificationSchema,
  'notifications/resources/list_changed': ResourceListChangedNotificationSchema,
  'notifications/resources/updated': ResourceUpdatedNotificationSchema,
};

/**
 * Connects an SDK Client over Streamable HTTP.
 * @param {string} url             e.g. http://127.0.0.1:PORT/mcp
 * @param {object} [options]
 * @param {object} [options.headers]       extra request headers (an `authorization` here replaces the default)
 * @param {boolean} [options.auth]         false: no default credentials (lib/auth.js); default true
 * @param {object} [options.capabilities]  client capabilities to declare
 * @param {object} [options.handlers]      { 'sampling/createMessage': fn, 'elicitation/create': fn, 'roots/list': fn }
 * @param {object} [options.notifications] { 'notifications/message': fn, 'notifications/tools/list_changed': fn, … }
 * @param {object|Function} [options.t]    node:test context (or `after`): close() is registered on it
 */
export async function connectClient(url, {
  headers: givenHeaders = {}, capabilities = {}, handlers = {}, notifications = {}, t, name = 'gatehouse-it', auth = true,
} = {}) {
  const headers = withAuth(url, givenHeaders, { auth });
  const client = new Client({ name, version: '1.0.0' }, { capabilities });
  for (const [method, handler] of Object.entries(handlers)) {
    const schema = REQUEST_SCHEMAS[method];
    if (!schema) throw new Error(`no schema known for request ${method}`);
    client.setRequestHandler(schema, handler);
  }
  for (const [method, handler] of Object.entries(notifications)) {
    const schema = NOTIFICATION_SCHEMAS[method];
    if (!schema) throw new Error(`no schema known for notification ${method}`);
    client.setNotificationHandler(schema, handler);
  }
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const errors = [];
  client.onerror = (error) => errors.push(error);
  await client.connect(transport);
  client.transportErrors = errors;
  const close = async () => {
    try { await transport.terminateSession(); } catch { /* the gateway may be gone */ }
    try { await client.close(); } catch { /* already closed */ }
  };
  client.closeQuietly = close;
  if (t) (typeof t === 'function' ? t : t.after.bind(t))(close);
  return client;
}

/**
 * Follows nextCursor until the list ends. kind: 'tools' | 'prompts' | 'resources' | 'resourceTemplates'.
 * Returns {items, pages}.
 */
export async function listAll(client, kind, { maxPages = 200 } = {}) {
  const method = {
    tools: 'listTools',
    prompts: 'listPrompts',
    resources: 'listResources',
    resourceTemplates: 'listResourceTemplates',
  }[kind];
  const items = [];
  const cursors = new Set();
  let cursor;
  let pages = 0;
  for (; pages < maxPages; pages++) {
    const result = await client[method](cursor === undefined ? {} : { cursor });
    items.push(...result[kind]);
    cursor = result.nextCursor;
    if (cursor === undefined || cursor === null) return { items, pages: pages + 1 };
    if (cursors.has(cursor)) throw new Error(`${kind}: cursor ${JSON.stringify(cursor)} repeated`);
    cursors.add(cursor);
  }
  throw new Error(`${kind}: more than ${maxPages} pages`);
}

/** The concatenated text of a tool result's text contents. */
export function resultText(result) {
  return (result?.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
}

/** Runs fn and returns the McpError it rejects with (fails if it resolves or throws something else). */
export async function mcpError(fn) {
  try {
    const value = await fn();
    throw new Error(`expected an MCP error, got a result: ${JSON.stringify(value).slice(0, 500)}`);
  } catch (error) {
    if (error instanceof McpError) return error;
    throw error;
  }
}

export { McpError };
