// /mcp in front of five real upstreams (server-everything over stdio, streamable HTTP and SSE,
// server-filesystem, server-memory) and /mcp/<server> for one of them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  connectClient, everythingStdio, filesystemStdio, fixtureStdio, getJson, listAll, mcpError, memoryStdio,
  resultText, sseEntry, startEverythingHttp, startGatehouse, streamableHttpEntry, tempDir, waitFor,
} from './lib/index.js';

const SERVER_IDS = ['everything', 'evhttp', 'evsse', 'fs', 'memory'];
const EVERYTHING_IDS = ['everything', 'evhttp', 'evsse'];

describe('aggregate /mcp over stdio, streamable-http and sse upstreams', () => {
  let gh;
  let client;
  let data;
  const cleanups = [];

  before(async () => {
    data = tempDir('gatehouse-agg-');
    cleanups.push(data.cleanup);
    const fsDir = path.join(data.dir, 'files');
    fs.mkdirSync(path.join(fsDir, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(fsDir, 'hello.txt'), 'hello from the filesystem server\n');
    const [http, sse] = await Promise.all([
      startEverythingHttp('streamableHttp', { t: (fn) => cleanups.push(fn) }),
      startEverythingHttp('sse', { t: (fn) => cleanups.push(fn) }),
    ]);
    gh = await startGatehouse({
      t: (fn) => cleanups.push(fn),
      servers: {
        everything: everythingStdio({ description: 'everything over stdio' }),
        evhttp: streamableHttpEntry(http.url, { description: 'everything over streamable HTTP' }),
        evsse: sseEntry(sse.url, { description: 'everything over SSE' }),
        fs: filesystemStdio(fsDir),
        memory: memoryStdio(path.join(data.dir, 'memory.jsonl')),
      },
    });
    data.fsDir = fsDir;
    client = await connectClient(gh.mcpUrl, { t: (fn) => cleanups.push(fn) });
  });

  after(async () => {
    // Clients first, then the gateway, then the HTTP upstreams, then temp files.
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch { /* keep cleaning */ }
    }
  });

  it('advertises tools, prompts, resources, completions and logging', () => {
    const caps = client.getServerCapabilities();
    for (const cap of ['tools', 'prompts', 'resources', 'completions', 'logging']) {
      assert.ok(caps?.[cap], `server capabilities lack ${cap}: ${JSON.stringify(caps)}`);
    }
  });

  it('lists every server\'s tools with <server>__ prefixes', async () => {
    const { items } = await listAll(client, 'tools');
    const names = items.map((tool) => tool.name);
    for (const expected of [
      'everything__echo', 'evhttp__echo', 'evsse__echo', 'everything__get-sum',
      'everything__trigger-long-running-operation', 'fs__list_directory', 'fs__read_text_file',
      'memory__read_graph', 'memory__create_entities',
    ]) {
      assert.ok(names.includes(expected), `tools/list lacks ${expected}; got ${names.join(', ')}`);
    }
    for (const name of names) {
      const prefix = name.split('__')[0];
      assert.ok(SERVER_IDS.includes(prefix), `tool ${name} has no known server prefix`);
    }
    const listDirectory = items.find((tool) => tool.name === 'fs__list_directory');
    assert.equal(listDirectory.inputSchema.type, 'object');
    assert.ok(listDirectory.inputSchema.properties.path, 'inputSchema passed through unchanged');
    assert.ok(listDirectory.outputSchema, 'outputSchema passed through');
    const echo = items.find((tool) => tool.name === 'everything__echo');
    assert.equal(echo.annotations?.readOnlyHint, true, 'annotations passed through');
  });

  it('routes calls to the right server and returns their content', async () => {
    for (const id of EVERYTHING_IDS) {
      const echoed = await client.callTool({ name: `${id}__echo`, arguments: { message: `hi via ${id}` } });
      assert.equal(resultText(echoed), `Echo: hi via ${id}`);
    }
    const sum = await client.callTool({ name: 'evhttp__get-sum', arguments: { a: 2, b: 40 } });
    assert.equal(resultText(sum), 'The sum of 2 and 40 is 42.');

    const listing = await client.callTool({ name: 'fs__list_directory', arguments: { path: data.fsDir } });
    assert.match(resultText(listing), /\[FILE\] hello\.txt/);
    assert.match(resultText(listing), /\[DIR\] sub/);
    assert.match(listing.structuredContent?.content ?? '', /hello\.txt/, 'structuredContent passed through');
    const file = await client.callTool({ name: 'fs__read_text_file', arguments: { path: path.join(data.fsDir, 'hello.txt') } });
    assert.match(resultText(file), /hello from the filesystem server/);

    await client.callTool({
      name: 'memory__create_entities',
      arguments: { entities: [{ name: 'Gatehouse', entityType: 'project', observations: ['an MCP gateway'] }] },
    });
    const graph = await client.callTool({ name: 'memory__read_graph', arguments: {} });
    assert.ok(graph.structuredContent.entities.some((e) => e.name === 'Gatehouse'),
      `memory graph lacks the entity: ${resultText(graph)}`);
  });

  it('carries large requests and answers intact over every transport', async () => {
    // 300 KB each way: several reads of the gateway's request and answer buffers (up to 64 KiB each),
    // quotes, backslashes, newlines and non-ASCII text that the JSON writer must escape or pass through.
    const unit = 'Gatehouse \u00e9\u4e2d "quoted" back\\slash\ttab\nline ';
    const message = unit.repeat(Math.ceil(300_000 / unit.length));
    for (const id of EVERYTHING_IDS) {
      const echoed = await client.callTool({ name: `${id}__echo`, arguments: { message } });
      assert.equal(resultText(echoed), `Echo: ${message}`, `${id}: the 300 KB echo came back changed`);
    }
  });

  it('reports a failing tool as an isError result, not a protocol error', async () => {
    const result = await client.callTool({ name: 'fs__read_text_file', arguments: { path: '/etc/passwd' } });
    assert.equal(result.isError, true, `expected isError for a path outside the allowed directory: ${JSON.stringify(result)}`);
  });

  it('serves one server unprefixed on /mcp/<server>', async (t) => {
    const fsClient = await connectClient(`${gh.mcpUrl}/fs`, { t });
    const { items } = await listAll(fsClient, 'tools');
    const names = items.map((tool) => tool.name);
    assert.ok(names.includes('list_directory'), `got ${names.join(', ')}`);
    assert.ok(names.every((name) => !name.includes('__')), `prefixed names on /mcp/fs: ${names.join(', ')}`);
    const listing = await fsClient.callTool({ name: 'list_directory', arguments: { path: data.fsDir } });
    assert.match(resultText(listing), /\[FILE\] hello\.txt/);

    for (const id of EVERYTHING_IDS) {
      const one = await connectClient(`${gh.mcpUrl}/${id}`, { t });
      const tools = (await listAll(one, 'tools')).items.map((tool) => tool.name);
      assert.ok(tools.includes('echo') && tools.includes('get-sum'), `/mcp/${id}: ${tools.join(', ')}`);
      assert.equal(resultText(await one.callTool({ name: 'echo', arguments: { message: id } })), `Echo: ${id}`);
      const prompts = (await listAll(one, 'prompts')).items.map((prompt) => prompt.name);
      assert.ok(prompts.includes('simple-prompt'), `/mcp/${id} prompts: ${prompts.join(', ')}`);
    }
  });

  it('paginates the aggregate lists: no duplicates, totals equal the sum over servers', async (t) => {
    const aggregateTools = await listAll(client, 'tools');
    const aggregatePrompts = await listAll(client, 'prompts');
    const toolNames = aggregateTools.items.map((tool) => tool.name);
    assert.equal(new Set(toolNames).size, toolNames.length, 'duplicate tool names across pages');
    const promptNames = aggregatePrompts.items.map((prompt) => prompt.name);
    assert.equal(new Set(promptNames).size, promptNames.length, 'duplicate prompt names across pages');

    let toolSum = 0;
    let promptSum = 0;
    for (const id of SERVER_IDS) {
      const one = await connectClient(`${gh.mcpUrl}/${id}`, { t });
      const tools = await listAll(one, 'tools');
      toolSum += tools.items.length;
      for (const tool of tools.items) {
        assert.ok(toolNames.includes(`${id}__${tool.name}`), `aggregate lacks ${id}__${tool.name}`);
      }
      if (one.getServerCapabilities()?.prompts) promptSum += (await listAll(one, 'prompts')).items.length;
    }
    assert.equal(toolNames.length, toolSum, `aggregate has ${toolNames.length} tools, servers have ${toolSum}`);
    assert.equal(promptNames.length, promptSum, `aggregate has ${promptNames.length} prompts, servers have ${promptSum}`);
  });

  it('lists, reads and templates resources, routed to the server that listed them', async () => {
    const { items } = await listAll(client, 'resources');
    const uris = items.map((resource) => resource.uri);
    assert.ok(uris.includes('demo://resource/static/document/instructions.md'), `got ${uris.join(', ')}`);
    assert.ok(uris.includes('memory://knowledge-graph'), `got ${uris.join(', ')}`);

    const doc = await client.readResource({ uri: 'demo://resource/static/document/instructions.md' });
    assert.equal(doc.contents[0].uri, 'demo://resource/static/document/instructions.md');
    assert.equal(doc.contents[0].mimeType, 'text/markdown');
    assert.ok(doc.contents[0].text.length > 20);

    const graph = await client.readResource({ uri: 'memory://knowledge-graph' });
    assert.equal(graph.contents[0].mimeType, 'application/json');
    assert.ok(Array.isArray(JSON.parse(graph.contents[0].text).entities));

    const templates = (await listAll(client, 'resourceTemplates')).items.map((tpl) => tpl.uriTemplate);
    assert.ok(templates.includes('demo://resource/dynamic/text/{resourceId}'), `got ${templates.join(', ')}`);
    const dynamic = await client.readResource({ uri: 'demo://resource/dynamic/text/7' });
    assert.match(dynamic.contents[0].text, /^Resource 7: This is a plaintext resource/);

    const missing = await mcpError(() => client.readResource({ uri: 'nowhere://no/such/resource' }));
    assert.equal(missing.code, -32002, missing.message);
  });

  it('lists and gets prefixed prompts', async () => {
    const names = (await listAll(client, 'prompts')).items.map((prompt) => prompt.name);
    for (const id of EVERYTHING_IDS) {
      assert.ok(names.includes(`${id}__args-prompt`), `prompts/list lacks ${id}__args-prompt: ${names.join(', ')}`);
    }
    const simple = await client.getPrompt({ name: 'evsse__simple-prompt' });
    assert.equal(simple.messages[0].content.text, 'This is a simple prompt without arguments.');
    const withArgs = await client.getPrompt({ name: 'everything__args-prompt', arguments: { city: 'Paris', state: 'Texas' } });
    assert.equal(withArgs.messages[0].content.text, "What's weather in Paris, Texas?");
    const unknown = await mcpError(() => client.getPrompt({ name: 'everything__no-such-prompt' }));
    assert.equal(unknown.code, -32602, unknown.message);
  });

  it('relays completion/complete for prompt arguments and resource templates', async () => {
    for (const id of ['everything', 'evhttp']) {
      const department = await client.complete({
        ref: { type: 'ref/prompt', name: `${id}__completable-prompt` },
        argument: { name: 'department', value: 'Eng' },
      });
      assert.deepEqual(department.completion.values, ['Engineering']);
      const person = await client.complete({
        ref: { type: 'ref/prompt', name: `${id}__completable-prompt` },
        argument: { name: 'name', value: 'A' },
        context: { arguments: { department: 'Engineering' } },
      });
      assert.deepEqual(person.completion.values, ['Alice']);
    }
    const resourceId = await client.complete({
      ref: { type: 'ref/resource', uri: 'demo://resource/dynamic/text/{resourceId}' },
      argument: { name: 'resourceId', value: '5' },
    });
    assert.deepEqual(resourceId.completion.values, ['5']);
  });

  it('answers logging/setLevel and ping', async () => {
    assert.deepEqual(await client.setLoggingLevel('warning'), {});
    assert.deepEqual(await client.ping(), {});
    const one = await getJson(`${gh.url}/gateway/health`);
    assert.equal(one.status, 200);
  });
});

describe('resources on /mcp that no list names, and updates about another server\'s', () => {
  it('a link a tool returned is read at its server; an update one server sends about another\'s URI is dropped', async (t) => {
    const gh = await startGatehouse({
      t, servers: { alpha: fixtureStdio('links.js', { env: { NAME: 'alpha' } }), bravo: fixtureStdio('links.js', { env: { NAME: 'bravo' } }) },
    });
    const updates = [];
    const client = await connectClient(gh.mcpUrl, {
      t, notifications: { 'notifications/resources/updated': (n) => { updates.push(n.params); } },
    });
    const link = (await client.callTool({ name: 'alpha__link', arguments: {} })).content[0];
    assert.equal(link.type, 'resource_link');
    const read = await client.readResource({ uri: link.uri });
    assert.equal(read.contents[0].text, 'alpha read alpha://hidden/x');
    await client.subscribeResource({ uri: 'alpha://static/a' });
    await client.callTool({ name: 'bravo__touch', arguments: { uri: 'alpha://static/a' } });
    await client.callTool({ name: 'alpha__touch', arguments: { uri: 'alpha://static/a' } });
    await waitFor(() => updates.length > 0, { what: 'alpha\'s update' });
    await client.callTool({ name: 'bravo__touch', arguments: { uri: 'bravo://static/a' } });  // its own: passes
    await waitFor(() => updates.length > 1, { what: 'bravo\'s update about its own resource' });
    assert.deepEqual(updates.map((u) => [u._meta?.from, u.uri]), [['alpha', 'alpha://static/a'], ['bravo', 'bravo://static/a']]);
  });
});
