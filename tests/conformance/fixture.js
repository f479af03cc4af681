#!/usr/bin/env node
// MCP fixture server for the conformance suite (@modelcontextprotocol/conformance, server scenarios).
// Streamable HTTP on http://127.0.0.1:$PORT/mcp, stateful sessions, resumable SSE streams.
// PORT=0 (or unset) lets the OS pick; the chosen port is printed on stdout as one JSON line:
//   {"msg":"listening","port":N,"url":"http://127.0.0.1:N/mcp"}
// Binds 127.0.0.1 only, and rejects non-localhost Host headers (DNS-rebinding protection).

import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import {
  CallToolRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  isInitializeRequest,
} from '@modelcontextprotocol/sdk/types.js';

const HOST = '127.0.0.1';
const PATH = '/mcp';
const RETRY_MS = 1000; // SSE `retry:` sent in priming events (SEP-1699)

// 1x1 red PNG and a minimal (empty) 8 kHz mono WAV.
const PNG_1PX = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV_EMPTY = 'UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=';

const text = (t) => ({ type: 'text', text: t });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const emptyObject = { type: 'object', properties: {} };

// ---------------------------------------------------------------------------
// Tools. Input schemas are plain JSON Schema, listed exactly as written here
// (json_schema_2020_12_tool needs $schema, $defs and additionalProperties kept).

function log(server, extra, level, data) {
  if (server.isMessageIgnored(level, extra.sessionId)) return Promise.resolve();
  return extra.sendNotification({ method: 'notifications/message', params: { level, logger: 'fixture', data } });
}

function progress(extra, value) {
  const progressToken = extra._meta?.progressToken;
  if (progressToken === undefined) return Promise.resolve();
  return extra.sendNotification({
    method: 'notifications/progress',
    params: { progressToken, progress: value, total: 100, message: `step ${value} of 100` },
  });
}

async function elicit(server, extra, params) {
  if (!server.getClientCapabilities()?.elicitation) {
    return { isError: true, content: [text('client does not support elicitation')] };
  }
  const r = await extra.sendRequest({ method: 'elicitation/create', params }, ElicitResultSchema);
  return { content: [text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)] };
}

const TOOLS = [
  {
    name: 'test_simple_text',
    description: 'Returns one text content item',
    inputSchema: emptyObject,
    run: async () => ({ content: [text('This is a simple text response for testing.')] }),
  },
  {
    name: 'test_image_content',
    description: 'Returns one PNG image content item',
    inputSchema: emptyObject,
    run: async () => ({ content: [{ type: 'image', data: PNG_1PX, mimeType: 'image/png' }] }),
  },
  {
    name: 'test_audio_content',
    description: 'Returns one WAV audio content item',
    inputSchema: emptyObject,
    run: async () => ({ content: [{ type: 'audio', data: WAV_EMPTY, mimeType: 'audio/wav' }] }),
  },
  {
    name: 'test_embedded_resource',
    description: 'Returns one embedded text resource',
    inputSchema: emptyObject,
    run: async () => ({
      content: [{
        type: 'resource',
        resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' },
      }],
    }),
  },
  {
    name: 'test_multiple_content_types',
    description: 'Returns text, image and embedded resource content',
    inputSchema: emptyObject,
    run: async () => ({
      content: [
        text('Multiple content types test:'),
        { type: 'image', data: PNG_1PX, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' },
        },
      ],
    }),
  },
  {
    name: 'test_tool_with_logging',
    description: 'Sends three info log notifications while it runs',
    inputSchema: emptyObject,
    run: async (server, _args, extra) => {
      await log(server, extra, 'info', 'Tool execution started');
      await sleep(50);
      await log(server, extra, 'info', 'Tool processing data');
      await sleep(50);
      await log(server, extra, 'info', 'Tool execution completed');
      return { content: [text('Tool with logging executed successfully')] };
    },
  },
  {
    name: 'test_tool_with_progress',
    description: 'Reports progress 0, 50, 100 of 100 when given a progress token',
    inputSchema: emptyObject,
    run: async (_server, _args, extra) => {
      await progress(extra, 0);
      await sleep(50);
      await progress(extra, 50);
      await sleep(50);
      await progress(extra, 100);
      return { content: [text(`progress reported for token ${JSON.stringify(extra._meta?.progressToken ?? null)}`)] };
    },
  },
  {
    name: 'test_error_handling',
    description: 'Always fails with an isError result',
    inputSchema: emptyObject,
    run: async () => ({ isError: true, content: [text('This tool intentionally returns an error for testing')] }),
  },
  {
    name: 'test_sampling',
    description: 'Asks the client for an LLM completion (sampling/createMessage)',
    inputSchema: {
      type: 'object',
      properties: { prompt: { type: 'string', description: 'The prompt to send to the LLM' } },
      required: ['prompt'],
    },
    run: async (server, args, extra) => {
      if (!server.getClientCapabilities()?.sampling) {
        return { isError: true, content: [text('client does not support sampling')] };
      }
      const r = await extra.sendRequest({
        method: 'sampling/createMessage',
        params: { messages: [{ role: 'user', content: text(String(args.prompt)) }], maxTokens: 100 },
      }, CreateMessageResultSchema);
      const answer = Array.isArray(r.content) ? r.content.find((c) => c.type === 'text')?.text : r.content?.text;
      return { content: [text(`LLM response: ${answer ?? JSON.stringify(r.content)}`)] };
    },
  },
  {
    name: 'test_elicitation',
    description: 'Asks the user for a username and email (elicitation/create)',
    inputSchema: {
      type: 'object',
      properties: { message: { type: 'string', description: 'The message to show the user' } },
      required: ['message'],
    },
    run: (server, args, extra) => elicit(server, extra, {
      message: String(args.message),
      requestedSchema: {
        type: 'object',
        properties: {
          username: { type: 'string', description: "User's response" },
          email: { type: 'string', description: "User's email address" },
        },
        required: ['username', 'email'],
      },
    }),
  },
  {
    name: 'test_elicitation_sep1034_defaults',
    description: 'Elicitation whose schema has defaults for every primitive type (SEP-1034)',
    inputSchema: emptyObject,
    run: (server, _args, extra) => elicit(server, extra, {
      message: 'Please review and update the form fields with defaults',
      requestedSchema: {
        type: 'object',
        properties: {
          name: { type: 'string', description: 'User name', default: 'John Doe' },
          age: { type: 'integer', description: 'User age', default: 30 },
          score: { type: 'number', description: 'User score', default: 95.5 },
          status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
          verified: { type: 'boolean', description: 'Verification status', default: true },
        },
      },
    }),
  },
  {
    name: 'test_elicitation_sep1330_enums',
    description: 'Elicitation with all five enum schema variants (SEP-1330)',
    inputSchema: emptyObject,
    run: (server, _args, extra) => elicit(server, extra, {
      message: 'Please select options from the enum fields',
      requestedSchema: {
        type: 'object',
        properties: {
          untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
          titledSingle: {
            type: 'string',
            description: 'Select one option with titles',
            oneOf: [
              { const: 'value1', title: 'First Option' },
              { const: 'value2', title: 'Second Option' },
              { const: 'value3', title: 'Third Option' },
            ],
          },
          legacyEnum: {
            type: 'string',
            description: 'Select one option (legacy)',
            enum: ['opt1', 'opt2', 'opt3'],
            enumNames: ['Option One', 'Option Two', 'Option Three'],
          },
          untitledMulti: {
            type: 'array',
            description: 'Select multiple options',
            minItems: 1,
            maxItems: 3,
            items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
          },
          titledMulti: {
            type: 'array',
            description: 'Select multiple options with titles',
            minItems: 1,
            maxItems: 3,
            items: {
              anyOf: [
                { const: 'value1', title: 'First Choice' },
                { const: 'value2', title: 'Second Choice' },
                { const: 'value3', title: 'Third Choice' },
              ],
            },
          },
        },
      },
    }),
  },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Tool whose input schema uses JSON Schema 2020-12 keywords (SEP-1613)',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } },
      },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
    run: async (_server, args) => ({ content: [text(`json_schema_2020_12_tool called with ${JSON.stringify(args)}`)] }),
  },
  {
    name: 'test_reconnection',
    description: 'Closes its SSE response stream mid-call and answers after the client resumes (SEP-1699)',
    inputSchema: emptyObject,
    run: async (_server, _args, extra) => {
      // Only offered by the SDK when the client can resume (priming event sent, protocol >= 2025-11-25).
      extra.closeSSEStream?.();
      await sleep(200);
      return { content: [text('Reconnection test completed successfully.')] };
    },
  },
];
const TOOLS_BY_NAME = new Map(TOOLS.map((t) => [t.name, t]));

function addTools(mcp) {
  const server = mcp.server;
  server.registerCapabilities({ tools: { listChanged: true } });
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: TOOLS.map(({ name, description, inputSchema }) => ({ name, description, inputSchema })),
  }));
  server.setRequestHandler(CallToolRequestSchema, (request, extra) => {
    const tool = TOOLS_BY_NAME.get(request.params.name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    return tool.run(server, request.params.arguments ?? {}, extra);
  });
}

// ---------------------------------------------------------------------------
// Resources, prompts, completion, logging.

function addResources(mcp) {
  const textResource = (uri, mimeType, body) => ({ contents: [{ uri, mimeType, text: body }] });
  mcp.registerResource('static-text', 'test://static-text',
    { title: 'Static text', description: 'A static text resource', mimeType: 'text/plain' },
    async (uri) => textResource(uri.href, 'text/plain', 'This is the content of the static text resource.'));
  mcp.registerResource('static-binary', 'test://static-binary',
    { title: 'Static binary', description: 'A static binary resource (1x1 PNG)', mimeType: 'image/png' },
    async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_1PX }] }));
  mcp.registerResource('watched-resource', 'test://watched-resource',
    { title: 'Watched resource', description: 'A resource clients can subscribe to', mimeType: 'text/plain' },
    async (uri) => textResource(uri.href, 'text/plain', 'Watched resource content'));
  mcp.registerResource('template',
    new ResourceTemplate('test://template/{id}/data', {
      list: undefined,
      complete: { id: (value) => ['123', '456', '789'].filter((v) => v.startsWith(value)) },
    }),
    { title: 'Template', description: 'A resource template with an {id} parameter', mimeType: 'application/json' },
    async (uri, { id }) => textResource(uri.href, 'application/json',
      JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` })));

  const subscriptions = new Set();
  mcp.server.registerCapabilities({ resources: { subscribe: true, listChanged: true } });
  mcp.server.setRequestHandler(SubscribeRequestSchema, (request) => {
    subscriptions.add(request.params.uri);
    return {};
  });
  mcp.server.setRequestHandler(UnsubscribeRequestSchema, (request) => {
    subscriptions.delete(request.params.uri);
    return {};
  });
}

function addPrompts(mcp) {
  const user = (content) => ({ role: 'user', content });
  mcp.registerPrompt('test_simple_prompt',
    { title: 'Simple prompt', description: 'A prompt without arguments' },
    async () => ({ messages: [user(text('This is a simple prompt for testing.'))] }));
  mcp.registerPrompt('test_prompt_with_arguments',
    {
      title: 'Prompt with arguments',
      description: 'A prompt with two required arguments',
      argsSchema: {
        arg1: completable(z.string().describe('First test argument'),
          (value) => ['paris', 'park', 'party', 'test-value'].filter((v) => v.startsWith(value))),
        arg2: z.string().describe('Second test argument'),
      },
    },
    async ({ arg1, arg2 }) => ({ messages: [user(text(`Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`))] }));
  mcp.registerPrompt('test_prompt_with_embedded_resource',
    {
      title: 'Prompt with embedded resource',
      description: 'A prompt that embeds a resource',
      argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') },
    },
    async ({ resourceUri }) => ({
      messages: [
        user({ type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
        user(text('Please process the embedded resource above.')),
      ],
    }));
  mcp.registerPrompt('test_prompt_with_image',
    { title: 'Prompt with image', description: 'A prompt that includes an image' },
    async () => ({
      messages: [
        user({ type: 'image', data: PNG_1PX, mimeType: 'image/png' }),
        user(text('Please analyze the image above.')),
      ],
    }));
}

function createServer() {
  const mcp = new McpServer(
    { name: 'gatehouse-conformance-fixture', version: '1.0.0' },
    { capabilities: { logging: {}, completions: {} } },
  );
  addTools(mcp);
  addResources(mcp);
  addPrompts(mcp);
  return mcp;
}

// ---------------------------------------------------------------------------
// Resumable SSE: events of one session, replayed after a Last-Event-ID.

function createEventStore() {
  const events = []; // {id, streamId, message}, in send order
  let seq = 0;
  return {
    async storeEvent(streamId, message) {
      const id = `${streamId}_${++seq}`;
      events.push({ id, streamId, message });
      return id;
    },
    async getStreamIdForEventId(eventId) {
      return events.find((e) => e.id === eventId)?.streamId;
    },
    async replayEventsAfter(lastEventId, { send }) {
      const at = events.findIndex((e) => e.id === lastEventId);
      if (at < 0) throw new Error(`unknown event id ${lastEventId}`);
      const { streamId } = events[at];
      for (const e of events.slice(at + 1)) {
        if (e.streamId === streamId && Object.keys(e.message).length > 0) await send(e.id, e.message);
      }
      return streamId;
    },
  };
}

// ---------------------------------------------------------------------------
// HTTP: one transport + McpServer per session.

const sessions = new Map(); // session id -> transport

function rpcError(res, status, code, message) {
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}

const app = createMcpExpressApp({ host: HOST });

app.post(PATH, async (req, res) => {
  const sid = req.headers['mcp-session-id'];
  let transport = sid ? sessions.get(sid) : undefined;
  if (sid && !transport) return rpcError(res, 404, -32001, 'Session not found');
  if (!transport) {
    if (!isInitializeRequest(req.body)) return rpcError(res, 400, -32600, 'Missing Mcp-Session-Id header');
    const mcp = createServer();
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore: createEventStore(),
      retryInterval: RETRY_MS,
      onsessioninitialized: (id) => sessions.set(id, transport),
      onsessionclosed: (id) => sessions.delete(id),
    });
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await mcp.connect(transport);
  }
  await transport.handleRequest(req, res, req.body);
});

async function existingSession(req, res) {
  const sid = req.headers['mcp-session-id'];
  if (!sid) return rpcError(res, 400, -32600, 'Missing Mcp-Session-Id header');
  const transport = sessions.get(sid);
  if (!transport) return rpcError(res, 404, -32001, 'Session not found');
  await transport.handleRequest(req, res);
}
app.get(PATH, existingSession);
app.delete(PATH, existingSession);

app.use((err, _req, res, _next) => {
  console.error('fixture: request failed:', err);
  if (!res.headersSent) rpcError(res, 500, -32603, 'Internal error');
});

const port = Number(process.env.PORT ?? 0);
const httpServer = app.listen(port, HOST, (err) => {
  if (err) {
    console.error(`fixture: cannot listen on ${HOST}:${port}: ${err.message}`);
    process.exit(1);
  }
  const actual = httpServer.address().port;
  console.log(JSON.stringify({ msg: 'listening', port: actual, url: `http://${HOST}:${actual}${PATH}` }));
});

function shutdown() {
  for (const transport of sessions.values()) transport.close().catch(() => {});
  httpServer.close(() => process.exit(0));
  httpServer.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
