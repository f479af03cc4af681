// OpenAPI tool servers (docs/openwebui.md "(a) OpenAPI tool servers", "(c) How results and errors come back"):
// GET /openapi/openapi.json (every server the caller may use) and /openapi/<server>/openapi.json (one server) are
// valid OpenAPI 3.1 for a real parser (@readme/openapi-parser), one operation per tool the caller may use;
// POST /openapi/<server>/<tool> answers what the same call over MCP answers, mapped as mcpo maps it; the
// documented error statuses; per-user operations from group grants (allow and deny lists); analytics rows.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { compileErrors, validate } from '@readme/openapi-parser';
import {
  TEST_BACKEND, connectClient, createTestDatabase, everythingStdio, fixtureStdio, memoryStdio, startGatehouse, tempDir,
  waitFor,
} from './lib/index.js';
import { request } from './lib/identity.js';
import { makeGroup, makeUser, putGrant } from './lib/tenancy.js';
import { checkpointSqlite, queryStore, waitForAnalyticsFlushed } from './lib/ops.js';

// ---- the mcpo mapping, written from the contract (docs/openwebui.md, table in section (c)) ---------------------

/** One content item as mcpo returns it. */
function mapItem(item) {
  if (item.type === 'text') {
    try { return JSON.parse(item.text); } catch { return item.text; }
  }
  if (item.type === 'image' || item.type === 'audio') return `data:${item.mimeType};base64,${item.data}`;
  if (item.type === 'resource') return item.resource;
  return item; // e.g. resource_link: the item as it is
}

/** The HTTP answer mcpo gives for a tools/call result: {status, body}. */
function mcpoAnswer(result) {
  let value;
  if (result.structuredContent !== undefined && result.structuredContent !== null) value = result.structuredContent;
  else {
    const items = (result.content ?? []).map(mapItem);
    value = items.length === 1 ? items[0] : items;
  }
  if (result.isError === true) {  // the tool's first text (as mcpo answers), else what the result maps to
    const text = (result.content ?? []).find((item) => item.type === 'text' && typeof item.text === 'string')?.text;
    return { status: 500, body: { detail: { message: text ?? (typeof value === 'string' ? value : JSON.stringify(value)) } } };
  }
  return { status: 200, body: value };
}

// ---- helpers -------------------------------------------------------------------------------------------------

/** POST /openapi/<server>/<tool> with a JSON body (a string is sent as it is); headers: the caller's. */
async function callOp(gh, server, tool, body = {}, { headers = gh.authHeaders, method = 'POST' } = {}) {
  return request(gh, method, `/openapi/${server}/${tool}`, {
    headers: { 'content-type': 'application/json', ...headers },
    body: method === 'GET' ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
  });
}

async function getSpec(gh, specPath, headers = gh.authHeaders) {
  const res = await request(gh, 'GET', specPath, { headers });
  assert.equal(res.status, 200, `GET ${specPath}: ${res.status} ${res.text.slice(0, 300)}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/);
  return res.body;
}

/** Validates a document with the real parser; fails with the parser's own message. Returns the document. */
async function assertValidOpenApi31(doc, what) {
  assert.equal(doc.openapi, '3.1.0', `${what}: openapi version`);
  const result = await validate(structuredClone(doc));
  assert.ok(result.valid, `${what} is not valid OpenAPI 3.1:\n${result.valid ? '' : compileErrors(result)}`);
  return doc;
}

/** operationId → {path, op} for the POST operations of a document. */
function operations(doc) {
  const out = {};
  for (const [p, item] of Object.entries(doc.paths ?? {})) {
    assert.deepEqual(Object.keys(item), ['post'], `${p}: only POST`);
    out[item.post.operationId] = { path: p, op: item.post };
  }
  return out;
}

function assertDetail(res, status, message, what) {
  assert.equal(res.status, status, `${what}: expected ${status}, got ${res.status} ${res.text.slice(0, 400)}`);
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, `${what}: content-type`);
  assert.equal(typeof res.body?.detail?.message, 'string', `${what}: body ${res.text.slice(0, 400)}`);
  assert.deepEqual(Object.keys(res.body), ['detail'], `${what}: body ${res.text.slice(0, 400)}`);
  if (message instanceof RegExp) assert.match(res.body.detail.message, message, what);
  else if (message !== undefined) assert.equal(res.body.detail.message, message, what);
}

/** Clock times in text ("created at 2:27:54 PM") differ between two calls made a second apart. */
function withoutClockTimes(value) {
  const clock = /\d{1,2}:\d{2}:\d{2}(\s?[AP]M)?/g;
  // A blob is base64: a time in it (get-resource-reference's "created at …") shows only once decoded; latin1
  // keeps every other byte as it is.
  const text = JSON.stringify(value, (k, v) =>
    k === 'blob' && typeof v === 'string' ? `base64:${Buffer.from(v, 'base64').toString('latin1').replace(clock, '<time>')}` : v);
  return JSON.parse(text.replace(clock, '<time>'));
}

// Every server-everything tool is either called with these arguments, or listed in SKIPPED with the reason.
const CALLS = {
  echo: [{ message: 'hello from openapi' }, { message: '{"looks": ["like", "json"]}' }, { message: '42' }],
  'get-sum': [{ a: 20, b: 22 }, { a: 1.5, b: -4 }],
  'get-env': [{}],
  'get-tiny-image': [{}],
  'get-structured-content': [{ location: 'Chicago' }, { location: 'New York' }],
  'get-annotated-message': [
    { messageType: 'success', includeImage: true }, { messageType: 'error' }, { messageType: 'debug', includeImage: false },
  ],
  'get-resource-reference': [{}, { resourceType: 'Blob', resourceId: 2 }, { resourceType: 'Text', resourceId: 7 }],
  'get-resource-links': [{ count: 1 }, { count: 4 }],
  'gzip-file-as-resource': [
    { name: 'hello.txt.gz', data: 'data:text/plain;base64,aGVsbG8gb3BlbmFwaQ==', outputType: 'resource' },
    { name: 'link.txt.gz', data: 'data:text/plain;base64,bGluaw==', outputType: 'resourceLink' },
  ],
  'trigger-long-running-operation': [{ duration: 0.2, steps: 2 }],
};
// Stateful toggles (server-wide state over stdio: "session undefined"): compared as a pair of calls each way.
const TOGGLES = ['toggle-simulated-logging', 'toggle-subscriber-updates'];
const SKIPPED = {
  'trigger-sampling-request': 'needs the client capability sampling (a server → client request)',
  'trigger-elicitation-request': 'needs the client capability elicitation (a server → client request)',
  'trigger-url-elicitation': 'needs the client capability elicitation (url mode)',
  'trigger-sampling-request-async': 'needs sampling with tasks',
  'trigger-elicitation-request-async': 'needs elicitation with tasks',
  'get-roots-list': 'needs the client capability roots',
  'simulate-research-query': 'needs task augmentation (taskSupport: required) and runs for seconds',
};

describe('OpenAPI tool servers', () => {
  let gh;
  let mcp; // the real SDK client on /mcp/everything, as the admin
  let mcpMemory;
  let everythingTools; // tools/list of everything over MCP
  let memoryTools;
  let memDir;
  before(async () => {
    memDir = tempDir('gatehouse-openapi-memory-');
    gh = await startGatehouse({
      servers: { everything: everythingStdio(), memory: memoryStdio(path.join(memDir.dir, 'memory.json')) },
    });
    mcp = await connectClient(`${gh.url}/mcp/everything`);
    mcpMemory = await connectClient(`${gh.url}/mcp/memory`);
    everythingTools = (await mcp.listTools()).tools;
    memoryTools = (await mcpMemory.listTools()).tools;
  });
  after(async () => {
    await mcp?.closeQuietly();
    await mcpMemory?.closeQuietly();
    await gh?.stop();
    memDir?.cleanup();
  });

  it('the per-server and aggregate documents are valid OpenAPI 3.1: one operation per tool, schema and description from it', async () => {
    const catalogs = { everything: everythingTools, memory: memoryTools };
    for (const [server, tools] of Object.entries(catalogs)) {
      const doc = await assertValidOpenApi31(await getSpec(gh, `/openapi/${server}/openapi.json`), `/openapi/${server}/openapi.json`);
      assert.deepEqual(doc.servers, [{ url: `/openapi/${server}` }]);
      assert.equal(typeof doc.info?.title, 'string');
      assert.equal(typeof doc.info?.version, 'string');
      const ops = operations(doc);
      assert.deepEqual(Object.keys(ops).sort(), tools.map((t) => t.name).sort(), `${server}: operations = tools/list`);
      for (const tool of tools) {
        const { path: p, op } = ops[tool.name];
        assert.equal(p, `/${tool.name}`);
        assert.equal(op.description, tool.description, `${server}/${tool.name}: description`);
        assert.deepEqual(op.requestBody?.content?.['application/json']?.schema, tool.inputSchema, `${server}/${tool.name}: request schema`);
        assert.ok(op.responses?.['200'], `${server}/${tool.name}: a 200 response`);
      }
    }

    const agg = await assertValidOpenApi31(await getSpec(gh, '/openapi/openapi.json'), '/openapi/openapi.json');
    assert.deepEqual(agg.servers, [{ url: '/openapi' }]);
    const ops = operations(agg);
    const expected = Object.entries(catalogs).flatMap(([server, tools]) => tools.map((t) => `${server}__${t.name}`)).sort();
    assert.deepEqual(Object.keys(ops).sort(), expected);
    for (const [server, tools] of Object.entries(catalogs)) {
      for (const tool of tools) {
        const { path: p, op } = ops[`${server}__${tool.name}`];
        assert.equal(p, `/${server}/${tool.name}`);
        assert.equal(op.description, tool.description);
        assert.deepEqual(op.requestBody.content['application/json'].schema, tool.inputSchema);
      }
    }

    // The parser does judge: a broken copy is refused (so "valid" above means something).
    const broken = structuredClone(agg);
    delete broken.info;
    broken.paths['/everything/echo'].post.responses = 'none';
    assert.equal((await validate(broken)).valid, false, 'a broken document must be invalid for the parser');
  });

  it('every server-everything tool answers over OpenAPI what it answers over MCP, mapped as mcpo does', async (t) => {
    const names = everythingTools.map((x) => x.name);
    const unaccounted = names.filter((n) => !(n in CALLS) && !TOGGLES.includes(n) && !(n in SKIPPED));
    assert.deepEqual(unaccounted, [], 'a server-everything tool without a case here');
    const skipped = names.filter((n) => n in SKIPPED);
    t.diagnostic(`skipped: ${skipped.map((n) => `${n} (${SKIPPED[n]})`).join('; ')}`);

    const kinds = new Set();
    for (const [tool, argsList] of Object.entries(CALLS)) {
      assert.ok(names.includes(tool), `${tool} is not listed by server-everything`);
      for (const args of argsList) {
        const result = await mcp.callTool({ name: tool, arguments: args });
        const expected = mcpoAnswer(result);
        const res = await callOp(gh, 'everything', tool, args);
        const what = `${tool} ${JSON.stringify(args)}`;
        assert.equal(res.status, expected.status, `${what}: ${res.text.slice(0, 400)}`);
        assert.match(res.headers.get('content-type') ?? '', /application\/json/, what);
        assert.deepEqual(withoutClockTimes(res.body), withoutClockTimes(expected.body), `${what}: MCP result ${JSON.stringify(result).slice(0, 600)}`);
        for (const item of result.content ?? []) kinds.add(item.type);
        if (result.structuredContent) kinds.add('structuredContent');
      }
    }
    // The cases cover every kind the mapping distinguishes.
    for (const kind of ['text', 'image', 'resource', 'resource_link', 'structuredContent']) {
      assert.ok(kinds.has(kind), `no case returned ${kind}: ${[...kinds].join(', ')}`);
    }
    // Spot checks of the mapping on known answers (independent of the comparison above).
    assert.equal((await callOp(gh, 'everything', 'echo', { message: 'hi' })).body, 'Echo: hi');
    const image = await callOp(gh, 'everything', 'get-tiny-image', {});
    assert.ok(Array.isArray(image.body) && image.body.some((v) => /^data:image\/png;base64,[A-Za-z0-9+/=]+$/.test(v)), image.text.slice(0, 200));
    const structured = await callOp(gh, 'everything', 'get-structured-content', { location: 'Los Angeles' });
    assert.deepEqual(Object.keys(structured.body).sort(), ['conditions', 'humidity', 'temperature']);

    // The toggles keep server-side state: two calls each way give the same two answers (started, stopped).
    for (const tool of TOGGLES) {
      const viaMcp = [];
      for (let i = 0; i < 2; i++) viaMcp.push(mcpoAnswer(await mcp.callTool({ name: tool, arguments: {} })));
      const viaOpenApi = [];
      for (let i = 0; i < 2; i++) {
        const res = await callOp(gh, 'everything', tool, {});
        viaOpenApi.push({ status: res.status, body: res.body });
      }
      const key = (a) => JSON.stringify(a);
      assert.deepEqual(viaOpenApi.map(key).sort(), viaMcp.map(key).sort(), tool);
      assert.ok(viaOpenApi.some((a) => /^Started/.test(a.body)) && viaOpenApi.some((a) => /^Stopped/.test(a.body)), key(viaOpenApi));
    }

    // The tools that need the client (sampling, elicitation, tasks) answer at once with a 500 detail, not a hang.
    for (const tool of skipped) {
      const res = await callOp(gh, 'everything', tool, { prompt: 'x', topic: 'x', message: 'x' });
      assertDetail(res, 500, undefined, `${tool} over OpenAPI`);
    }
  });

  it('server-memory: create_entities then read_graph, as over MCP', async () => {
    const entities = [
      { name: 'Gatehouse', entityType: 'gateway', observations: ['speaks MCP', 'serves OpenAPI'] },
      { name: 'Open WebUI', entityType: 'client', observations: ['calls tools'] },
    ];
    const created = await callOp(gh, 'memory', 'create_entities', { entities });
    assert.equal(created.status, 200, created.text);
    assert.deepEqual(created.body, mcpoAnswer({ structuredContent: { entities } }).body);
    const related = await callOp(gh, 'memory', 'create_relations', {
      relations: [{ from: 'Open WebUI', to: 'Gatehouse', relationType: 'calls' }],
    });
    assert.equal(related.status, 200, related.text);

    const graph = await callOp(gh, 'memory', 'read_graph', {});
    assert.equal(graph.status, 200, graph.text);
    const viaMcp = mcpoAnswer(await mcpMemory.callTool({ name: 'read_graph', arguments: {} }));
    assert.deepEqual(graph.body, viaMcp.body);
    assert.deepEqual(graph.body.entities.map((e) => e.name).sort(), ['Gatehouse', 'Open WebUI']);
    assert.deepEqual(graph.body.relations, [{ from: 'Open WebUI', to: 'Gatehouse', relationType: 'calls' }]);
    const found = await callOp(gh, 'memory', 'search_nodes', { query: 'OpenAPI' });
    assert.deepEqual(found.body.entities.map((e) => e.name), ['Gatehouse']);
  });

  it('errors: 404 unknown tool or server, 422 bad arguments or body, 500 isError, 405 wrong method, 401 anonymous', async () => {
    // Unknown tool, unknown server.
    assertDetail(await callOp(gh, 'everything', 'no-such-tool', {}), 404, 'Unknown tool: no-such-tool', 'unknown tool');
    assertDetail(await callOp(gh, 'no-such-server', 'echo', { message: 'x' }), 404, 'Unknown tool server: no-such-server', 'unknown server');
    assertDetail(await request(gh, 'GET', '/openapi/no-such-server/openapi.json', { headers: gh.authHeaders }), 404,
      'Unknown tool server: no-such-server', 'spec of an unknown server');

    // Invalid arguments: 422, and the tool is not called.
    assertDetail(await callOp(gh, 'everything', 'get-sum', { a: 'one', b: 2 }), 422, /^Invalid arguments: .*'a'/, 'a string for a number');
    assertDetail(await callOp(gh, 'everything', 'get-sum', { a: 1, b: true }), 422, /^Invalid arguments: .*'b'/, 'a boolean for a number');
    assertDetail(await callOp(gh, 'everything', 'echo', { message: 7 }), 422, /^Invalid arguments: .*'message'/, 'a number for a string');
    assertDetail(await callOp(gh, 'everything', 'echo', {}), 422, /^Invalid arguments: .*'message'/, 'a required argument missing');
    assertDetail(await callOp(gh, 'everything', 'get-sum', { a: 1 }), 422, /^Invalid arguments: .*'b'/, 'b missing');
    assertDetail(await callOp(gh, 'memory', 'create_entities', { entities: 'not a list' }), 422, /^Invalid arguments: .*'entities'/,
      'a string for an array');
    // The body is not a JSON object.
    for (const body of ['[{"message": "x"}]', '"hello"', '42', 'null', '{"message": ', 'not json']) {
      assertDetail(await callOp(gh, 'everything', 'echo', body), 422, undefined, `body ${body}`);
    }

    // A body that is not said to be JSON (a form, text/plain: what another site's page can send without asking
    // first): 415, and the tool is not called. Without a Content-Type the body is read as JSON.
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      assertDetail(await callOp(gh, 'everything', 'echo', { message: 'x' }, { headers: { ...gh.authHeaders, 'content-type': type } }),
        415, 'Send the arguments as Content-Type: application/json', type);
    }
    // (bytes: fetch gives a string body a Content-Type of its own)
    const untyped = await fetch(`${gh.url}/openapi/everything/echo`, { method: 'POST', headers: gh.authHeaders, body: Buffer.from('{"message": "untyped"}') });
    assert.equal(untyped.status, 200);
    assert.match(await untyped.text(), /untyped/);

    // isError results: 500 {"detail": {"message": <the tool's text>}}, the same text as over MCP.
    for (const [tool, args] of [
      ['get-resource-reference', { resourceId: -1 }], // the tool throws
      ['get-structured-content', { location: 'Paris' }], // not in the enum: the upstream's validation fails
      ['get-resource-links', { count: 50 }], // over the maximum
      ['gzip-file-as-resource', { name: 'x.gz', data: 'http://127.0.0.1:1/nothing-listens-here', outputType: 'resource' }],
    ]) {
      const viaMcp = await mcp.callTool({ name: tool, arguments: args });
      assert.equal(viaMcp.isError, true, `${tool} over MCP: ${JSON.stringify(viaMcp)}`);
      const expected = mcpoAnswer(viaMcp);
      assert.equal(expected.status, 500);
      const res = await callOp(gh, 'everything', tool, args);
      assertDetail(res, 500, expected.body.detail.message, `${tool} ${JSON.stringify(args)}`);
    }
    const thrown = await callOp(gh, 'everything', 'get-resource-reference', { resourceId: -1 });
    assert.equal(thrown.body.detail.message, 'Invalid resourceId: -1. Must be a finite positive integer.');

    // Methods: a tool is POSTed, a document is fetched with GET.
    assertDetail(await callOp(gh, 'everything', 'echo', undefined, { method: 'GET' }), 405, undefined, 'GET on a tool');
    assertDetail(await request(gh, 'PUT', '/openapi/everything/echo', { headers: gh.authHeaders, body: { message: 'x' } }), 405, undefined, 'PUT on a tool');
    // (a POST to a server's openapi.json calls a tool of that name, which everything has not)
    assertDetail(await request(gh, 'POST', '/openapi/everything/openapi.json', { headers: gh.authHeaders, body: {} }), 404,
      'Unknown tool: openapi.json', 'POST on a server document');
    assertDetail(await request(gh, 'POST', '/openapi/openapi.json', { headers: gh.authHeaders, body: {} }), 405, undefined,
      'POST on the aggregate document');
    // A 405 says what is allowed; HEAD fetches a document's fields; a tool's name may come percent-encoded.
    assert.equal((await request(gh, 'PUT', '/openapi/everything/echo', { headers: gh.authHeaders, body: {} })).headers.get('allow'), 'POST');
    assert.equal((await request(gh, 'POST', '/openapi/openapi.json', { headers: gh.authHeaders, body: {} })).headers.get('allow'), 'GET, HEAD');
    const head = await fetch(`${gh.url}/openapi/everything/openapi.json`, { method: 'HEAD', headers: gh.authHeaders });
    assert.equal(head.status, 200);
    assert.match(head.headers.get('content-type'), /json/);
    assert.equal(await head.text(), '');
    const encoded = await request(gh, 'POST', '/openapi/everything/ech%6F', { headers: gh.authHeaders, body: { message: 'decoded' } });
    assert.equal(encoded.status, 200, encoded.text);
    assert.match(JSON.stringify(encoded.body), /decoded/);

    // No credentials, or bad ones: 401 with a detail, on the documents and the operations.
    for (const headers of [{}, { authorization: 'Bearer gh_not_a_real_key' }]) {
      const who = headers.authorization ? 'a bad key' : 'no credentials';
      assertDetail(await request(gh, 'GET', '/openapi/openapi.json', { headers }), 401, undefined, `aggregate document, ${who}`);
      assertDetail(await request(gh, 'GET', '/openapi/everything/openapi.json', { headers }), 401, undefined, `server document, ${who}`);
      const call = await callOp(gh, 'everything', 'echo', { message: 'x' }, { headers });
      assertDetail(call, 401, undefined, `call, ${who}`);
      assert.match(call.headers.get('www-authenticate') ?? '', /^Bearer/, `call, ${who}: WWW-Authenticate`);
    }
  });

  it('two users in different groups get different operations; a tool the caller may not use is refused with 404', async () => {
    await makeGroup(gh, 'OA-Echo');
    await makeGroup(gh, 'OA-Memory');
    await putGrant(gh, 'OA-Echo', 'everything', { allow: ['echo', 'get-sum'] });
    await putGrant(gh, 'OA-Memory', 'memory', null);
    await putGrant(gh, 'OA-Memory', 'everything', { deny: ['echo', 'get-env'] });
    const ann = await makeUser(gh, 'ann@example.com', { groups: ['OA-Echo'] });
    const bob = await makeUser(gh, 'bob@example.com', { groups: ['OA-Memory'] });
    const nobody = await makeUser(gh, 'nobody@example.com');
    const everythingNames = everythingTools.map((x) => x.name);

    // Ann: echo and get-sum of everything, nothing else.
    const annDoc = await assertValidOpenApi31(await getSpec(gh, '/openapi/everything/openapi.json', ann.headers), "ann's everything document");
    assert.deepEqual(Object.keys(operations(annDoc)).sort(), ['echo', 'get-sum']);
    const annAgg = await assertValidOpenApi31(await getSpec(gh, '/openapi/openapi.json', ann.headers), "ann's aggregate");
    assert.deepEqual(Object.keys(operations(annAgg)).sort(), ['everything__echo', 'everything__get-sum']);
    assertDetail(await request(gh, 'GET', '/openapi/memory/openapi.json', { headers: ann.headers }), 404, 'Unknown tool server: memory',
      "memory's document for ann");

    // Bob: all of memory, everything without echo and get-env.
    const bobAllowed = everythingNames.filter((n) => n !== 'echo' && n !== 'get-env').sort();
    const bobDoc = await assertValidOpenApi31(await getSpec(gh, '/openapi/everything/openapi.json', bob.headers), "bob's everything document");
    assert.deepEqual(Object.keys(operations(bobDoc)).sort(), bobAllowed);
    const bobAgg = await assertValidOpenApi31(await getSpec(gh, '/openapi/openapi.json', bob.headers), "bob's aggregate");
    assert.deepEqual(Object.keys(operations(bobAgg)).sort(), [
      ...bobAllowed.map((n) => `everything__${n}`), ...memoryTools.map((x) => `memory__${x.name}`),
    ].sort());

    // Nobody: no operations, no server.
    const nobodyAgg = await assertValidOpenApi31(await getSpec(gh, '/openapi/openapi.json', nobody.headers), "nobody's aggregate");
    assert.deepEqual(nobodyAgg.paths, {});
    assertDetail(await request(gh, 'GET', '/openapi/everything/openapi.json', { headers: nobody.headers }), 404,
      'Unknown tool server: everything', "everything's document for nobody");
    assertDetail(await callOp(gh, 'everything', 'echo', { message: 'x' }, { headers: nobody.headers }), 404,
      'Unknown tool server: everything', 'echo for nobody');

    // Calls: allowed ones work, the others are refused exactly like a tool that does not exist.
    const annEcho = await callOp(gh, 'everything', 'echo', { message: 'ann here' }, { headers: ann.headers });
    assert.equal(annEcho.status, 200, annEcho.text);
    assert.equal(annEcho.body, 'Echo: ann here');
    assert.equal((await callOp(gh, 'everything', 'get-sum', { a: 2, b: 3 }, { headers: ann.headers })).body, 'The sum of 2 and 3 is 5.');
    assertDetail(await callOp(gh, 'everything', 'get-env', {}, { headers: ann.headers }), 404, 'Unknown tool: get-env', 'get-env for ann');
    assertDetail(await callOp(gh, 'everything', 'get-tiny-image', {}, { headers: ann.headers }), 404, 'Unknown tool: get-tiny-image',
      'get-tiny-image for ann');
    assertDetail(await callOp(gh, 'memory', 'read_graph', {}, { headers: ann.headers }), 404, 'Unknown tool server: memory', 'memory for ann');

    const bobGraph = await callOp(gh, 'memory', 'read_graph', {}, { headers: bob.headers });
    assert.equal(bobGraph.status, 200, bobGraph.text);
    assert.equal((await callOp(gh, 'everything', 'get-sum', { a: 2, b: 3 }, { headers: bob.headers })).status, 200);
    // The deny-list: echo and get-env exist, are absent from Bob's documents, and are refused as unknown.
    assertDetail(await callOp(gh, 'everything', 'echo', { message: 'x' }, { headers: bob.headers }), 404, 'Unknown tool: echo', 'echo for bob');
    assertDetail(await callOp(gh, 'everything', 'get-env', {}, { headers: bob.headers }), 404, 'Unknown tool: get-env', 'get-env for bob');
    // Refused before the arguments are judged: a 422 would tell that the tool exists.
    assertDetail(await callOp(gh, 'everything', 'echo', {}, { headers: bob.headers }), 404, 'Unknown tool: echo', 'echo without arguments for bob');
    const unknown = await callOp(gh, 'everything', 'no-such-tool', {}, { headers: bob.headers });
    const denied = await callOp(gh, 'everything', 'echo', { message: 'x' }, { headers: bob.headers });
    assert.equal(unknown.status, denied.status);
    assert.equal(denied.body.detail.message.replace('echo', '<tool>'), unknown.body.detail.message.replace('no-such-tool', '<tool>'));

    // A deny-list changed while in use: the next document lacks the tool and the next call is refused.
    await putGrant(gh, 'OA-Memory', 'everything', { deny: ['echo', 'get-env', 'get-sum'] }, { expect: 200 });
    const later = operations(await getSpec(gh, '/openapi/everything/openapi.json', bob.headers));
    assert.ok(!('get-sum' in later), Object.keys(later).join(', '));
    assert.deepEqual(Object.keys(later).sort(), bobAllowed.filter((n) => n !== 'get-sum'));
    assert.ok(!('everything__get-sum' in operations(await getSpec(gh, '/openapi/openapi.json', bob.headers))));
    assertDetail(await callOp(gh, 'everything', 'get-sum', { a: 2, b: 3 }, { headers: bob.headers }), 404, 'Unknown tool: get-sum',
      'get-sum for bob after the deny-list changed');
    // Ann's grant is untouched.
    assert.equal((await callOp(gh, 'everything', 'get-sum', { a: 2, b: 3 }, { headers: ann.headers })).status, 200);
  });
});

describe('OpenAPI documents of awkward tools, and servers that cannot list theirs', () => {
  it('local $refs are inlined (cycles cut), names are path-safe, operationIds are function names; 503 for a server down', async (t) => {
    const gh = await startGatehouse({
      t,
      env: { PUBLIC_URL: 'http://127.0.0.1/gh/' },
      servers: { odd: fixtureStdio('odd-tools.js'), broken: { command: '/nonexistent/gatehouse-test-binary' } },
    });
    for (const specPath of ['/openapi/odd/openapi.json', '/openapi/openapi.json']) {
      const doc = await assertValidOpenApi31(await getSpec(gh, specPath), specPath);
      for (const op of Object.values(operations(doc))) assert.match(op.op.operationId, /^[A-Za-z0-9_-]{1,64}$/);
      assert.match(doc.servers[0].url, /^\/gh\/openapi/, JSON.stringify(doc.servers));
    }
    const doc = await getSpec(gh, '/openapi/odd/openapi.json');
    const ops = operations(doc);
    assert.deepEqual(Object.values(ops).map((o) => o.path).sort(),
      ['/count', '/errstruct', '/openapi.json', '/q%3Fmark', '/refs', '/tree', '/with%20space%23and%7Bbrace%7D']);
    // Local references are inlined (a tool's "#/…" would name the document's root, and Open WebUI follows
    // references with no check for cycles): no $ref left, a recursive one cut to {} where it loops.
    assert.ok(!JSON.stringify(doc.paths).includes('$ref'), JSON.stringify(doc.paths));
    const schemaOf = (op) => ops[op].op.requestBody.content['application/json'].schema;
    assert.equal(schemaOf('refs').properties.from.properties.x.type, 'number');
    assert.deepEqual(schemaOf('refs').properties.to, schemaOf('refs').properties.from);
    assert.equal(schemaOf('refs').$defs, undefined);
    assert.equal(schemaOf('tree').properties.root.properties.label.type, 'string');
    assert.deepEqual(schemaOf('tree').properties.root.properties.children.items, {});
    // The paths as listed are the paths that work.
    for (const { path: p, op } of Object.values(ops)) {
      if (op.operationId === 'errstruct') continue;
      const res = await request(gh, 'POST', `/openapi/odd${p}`, { headers: { 'content-type': 'application/json', ...gh.authHeaders },
        body: JSON.stringify(op.operationId === 'refs' ? { from: { x: 1 } } : {}) });  // (refs requires `from`)
      assert.equal(res.status, 200, `${p}: ${res.status} ${res.text}`);
      assert.match(String(res.body), /^called /, res.text);
    }
    // An integer written 1e19 is one; isError answers the tool's text, not its structuredContent.
    assert.equal((await callOp(gh, 'odd', 'count', '{"n":1e19}')).status, 200);
    assert.equal((await callOp(gh, 'odd', 'count', { n: 1.5 })).status, 422);
    assertDetail(await callOp(gh, 'odd', 'errstruct'), 500, 'structured failure text', 'errstruct');
    // A Content-Type whose first type is not JSON (what a cross-site form may send): 415.
    const listed = await callOp(gh, 'odd', 'count', {}, { headers: { ...gh.authHeaders, 'content-type': 'text/plain, application/json' } });
    assert.equal(listed.status, 415, listed.text);
    // A server whose tools cannot be listed: not an empty document or "no such tool", but 503.
    const down = await request(gh, 'GET', '/openapi/broken/openapi.json', { headers: gh.authHeaders });
    assert.equal(down.status, 503, down.text);
    assert.match(down.body.detail.message, /Upstream server 'broken' is unavailable/);
    assert.equal((await callOp(gh, 'broken', 'anything')).status, 503);
  });
});

describe(`OpenAPI calls in analytics (${TEST_BACKEND})`, () => {
  it('OpenAPI calls are recorded like MCP calls: server and tool in the rows and in top_tools', async (t) => {
    const db = await createTestDatabase({ t });
    const gh = await startGatehouse({ t, database: db, servers: { everything: everythingStdio() } });
    const since = Math.floor(Date.now() / 1000) - 5;
    await makeGroup(gh, 'OA-Callers');
    await putGrant(gh, 'OA-Callers', 'everything', null);
    const rita = await makeUser(gh, 'rita@example.com', { groups: ['OA-Callers'] });

    for (let i = 0; i < 3; i++) {
      const res = await callOp(gh, 'everything', 'get-sum', { a: i, b: 1 }, { headers: rita.headers });
      assert.equal(res.status, 200, res.text);
    }
    assert.equal((await callOp(gh, 'everything', 'get-resource-reference', { resourceId: -1 }, { headers: rita.headers })).status, 500);
    assert.equal((await callOp(gh, 'everything', 'echo', {}, { headers: rita.headers })).status, 422);
    // The same kind of call over MCP, for comparison.
    const client = await connectClient(`${gh.url}/mcp/everything`, { headers: rita.headers, t });
    await client.callTool({ name: 'get-sum', arguments: { a: 1, b: 1 } });
    await client.closeQuietly();
    await waitForAnalyticsFlushed(gh);

    const report = await gh.api('GET', `/analytics?since=${since}&until=${Math.floor(Date.now() / 1000) + 60}&bucket=60&top=50`);
    assert.equal(report.status, 200, report.text);
    const top = report.body.top_tools;
    const sum = top.find((x) => x.server === 'everything' && x.tool === 'get-sum');
    assert.ok(sum, `top_tools: ${JSON.stringify(top)}`);
    assert.equal(sum.requests, 4, `3 OpenAPI calls and 1 MCP call: ${JSON.stringify(sum)}`);
    assert.equal(sum.errors, 0);
    const failed = top.find((x) => x.server === 'everything' && x.tool === 'get-resource-reference');
    assert.ok(failed, `top_tools: ${JSON.stringify(top)}`);
    assert.equal(failed.requests, 1);
    assert.equal(failed.errors, 1, `a 500 is an error: ${JSON.stringify(failed)}`);
    const server = report.body.top_servers.find((s) => s.server === 'everything');
    assert.ok(server && server.requests >= 6, `top_servers: ${JSON.stringify(report.body.top_servers)}`);
    assert.ok(report.body.top_users.some((u) => u.user === 'rita@example.com'), JSON.stringify(report.body.top_users));

    // The rows themselves (SQLite: read after the gateway stopped; PostgreSQL: while it runs).
    if (TEST_BACKEND !== 'postgres') {
      await gh.stop();
      checkpointSqlite(db);
    }
    const rows = await queryStore(db,
      "SELECT endpoint, method, status_code, user_email, server_id, tool FROM api_analytics WHERE tool IS NOT NULL AND tool <> '' ORDER BY id");
    const openapiRows = rows.filter((r) => String(r.endpoint).startsWith('/openapi'));
    assert.deepEqual(openapiRows.map((r) => [r.method, Number(r.status_code), r.user_email, r.server_id, r.tool]), [
      ['POST', 200, 'rita@example.com', 'everything', 'get-sum'],
      ['POST', 200, 'rita@example.com', 'everything', 'get-sum'],
      ['POST', 200, 'rita@example.com', 'everything', 'get-sum'],
      ['POST', 500, 'rita@example.com', 'everything', 'get-resource-reference'],
      ['POST', 422, 'rita@example.com', 'everything', 'echo'],
    ], JSON.stringify(rows));
    const mcpRows = rows.filter((r) => !String(r.endpoint).startsWith('/openapi'));
    assert.deepEqual(mcpRows.map((r) => [r.server_id, r.tool]), [['everything', 'get-sum']], JSON.stringify(rows));
    if (TEST_BACKEND === 'postgres') await gh.stop();
  });
});

describe('OpenAPI and a reload', () => {
  it('a server removed by a reload while its document waits for it: the gateway answers and keeps serving', async (t) => {
    // `slow` never answers initialize: the document waits for it (up to its timeoutMs) while the reload lands.
    const gh = await startGatehouse({ t, servers: { slow: { command: 'sleep', args: ['60'], timeoutMs: 3000 } } });
    const pending = request(gh, 'GET', '/openapi/slow/openapi.json', { headers: gh.authHeaders });
    await waitFor(() => gh.jsonLogs().some((l) => l.msg === 'upstream process started' && l.server === 'slow'),
      { timeoutMs: 5000, what: 'the slow server starting' });
    gh.writeServers({});
    gh.signal('SIGHUP');
    const res = await pending;  // its tools were never listed: unavailable, not an empty document
    assert.equal(res.status, 503, res.text);
    assert.match(res.body.detail.message, /Upstream server 'slow' is unavailable/);
    const health = await request(gh, 'GET', '/gateway/health');
    assert.equal(health.status, 200, 'the gateway is gone');
  });
});

describe('OpenAPI and a client that leaves', () => {
  it('a REST call whose client goes away is cancelled upstream (notifications/cancelled), as on /mcp', async (t) => {
    const gh = await startGatehouse({ t, servers: { hangy: fixtureStdio('hang.js', { timeoutMs: 60000 }) } });
    const abort = new AbortController();
    const left = fetch(`${gh.url}/openapi/hangy/hang`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...gh.authHeaders },
      body: JSON.stringify({ tag: 'rest' }), signal: abort.signal,
    }).catch((e) => e);
    const report = async () => (await callOp(gh, 'hangy', 'report', {})).body;
    await waitFor(async () => (await report()).hangCalls.some((c) => c.tag === 'rest'), { what: 'the call upstream' });
    abort.abort();
    await left;
    const call = (await report()).hangCalls.find((c) => c.tag === 'rest');
    await waitFor(async () => (await report()).cancelled.some((c) => JSON.stringify(c).includes(String(call.id))),
      { timeoutMs: 5000, what: `notifications/cancelled for upstream request ${call.id}` });
  });
});
