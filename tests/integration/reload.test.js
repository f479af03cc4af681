// SIGHUP reloads the servers file: a new server appears, an unchanged server (or one whose description alone
// changed) keeps its upstream process and its downstream sessions; one sent while the gateway starts waits until it can be handled.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { GATEHOUSE_BIN } from './lib/gatehouse.js';
import {
  cmdline, descendantPids, connectClient, everythingStdio, fixtureStdio, getJson, listAll, memoryStdio,
  pidAlive, resultText, startGatehouse, tempDir, waitFor,
} from './lib/index.js';

it('SIGHUP adds a new server and keeps sessions and processes of unchanged ones', async (t) => {
  const data = tempDir('gatehouse-reload-');
  t.after(data.cleanup);
  const before = { everything: everythingStdio({ description: 'stays' }) };
  const gh = await startGatehouse({ t, servers: before });

  const session = await connectClient(`${gh.mcpUrl}/everything`, { t });
  assert.equal(resultText(await session.callTool({ name: 'echo', arguments: { message: 'before' } })), 'Echo: before');
  const aggregate = await connectClient(gh.mcpUrl, { t });
  assert.equal(resultText(await aggregate.callTool({ name: 'everything__echo', arguments: { message: 'agg before' } })),
    'Echo: agg before');
  const everythingPids = descendantPids(gh.pid).filter((pid) => cmdline(pid).includes('server-everything'));
  assert.ok(everythingPids.length >= 1, 'no server-everything process under the gateway');

  gh.writeServers({
    everything: everythingStdio({ description: 'stays, described anew' }),  // only shown: not a change to restart for
    memory: memoryStdio(`${data.dir}/memory.jsonl`, { description: 'added on reload' }),
    echoer: fixtureStdio('hang.js', { description: 'also added' }),
  });
  gh.signal('SIGHUP');

  const servers = await waitFor(async () => {
    const { status, body } = await getJson(`${gh.url}/servers`);
    const ids = status === 200 ? body.servers.map((s) => s.id) : [];
    return ids.includes('memory') && ids.includes('echoer') ? body.servers : null;
  }, { timeoutMs: 10000, what: 'the new servers in GET /servers after SIGHUP' });
  assert.equal(servers.find((s) => s.id === 'memory').description, 'added on reload');
  assert.equal(servers.find((s) => s.id === 'everything').description, 'stays, described anew');
  assert.equal(gh.proc.exitCode, null, 'SIGHUP must not stop the gateway');

  // The existing sessions, on /mcp/everything and on /mcp, still work…
  assert.equal(resultText(await session.callTool({ name: 'echo', arguments: { message: 'after' } })), 'Echo: after');
  assert.equal(resultText(await aggregate.callTool({ name: 'everything__echo', arguments: { message: 'agg after' } })),
    'Echo: agg after');
  // …served by the same upstream process.
  assert.ok(everythingPids.every(pidAlive), 'the unchanged server\'s process was restarted');
  assert.deepEqual(descendantPids(gh.pid).filter((pid) => cmdline(pid).includes('server-everything')), everythingPids);

  // The new servers are usable: from a new session, and from the existing aggregate session.
  const fresh = await connectClient(gh.mcpUrl, { t });
  const names = (await listAll(fresh, 'tools')).items.map((tool) => tool.name);
  assert.ok(names.includes('memory__read_graph') && names.includes('echoer__echo'), names.join(', '));
  assert.equal(resultText(await fresh.callTool({ name: 'echoer__echo', arguments: { message: 'new' } })), 'Echo: new');
  const graph = await aggregate.callTool({ name: 'memory__read_graph', arguments: {} });
  assert.deepEqual(graph.structuredContent, { entities: [], relations: [] });
});

it('SIGHUP with a broken servers file keeps the running configuration', async (t) => {
  const gh = await startGatehouse({ t, servers: { everything: everythingStdio() } });
  const client = await connectClient(gh.mcpUrl, { t });
  assert.equal(resultText(await client.callTool({ name: 'everything__echo', arguments: { message: 'a' } })), 'Echo: a');
  gh.writeServers('{"mcpServers": {"everything": ');
  gh.signal('SIGHUP');
  // The reload attempt is logged; wait for the gateway to have processed it.
  await waitFor(() => gh.jsonLogs().some((e) => /reload/i.test(e.msg ?? '') && e.level !== 'info') ||
    gh.jsonLogs().some((e) => /reload/i.test(JSON.stringify(e)) && /fail|error|invalid|keep/i.test(JSON.stringify(e))),
  { timeoutMs: 10000, what: 'a log line about the failed reload' });
  assert.equal(gh.proc.exitCode, null, 'a bad file on SIGHUP must not stop the gateway');
  const { status, body } = await getJson(`${gh.url}/servers`);
  assert.equal(status, 200);
  assert.deepEqual(body.servers.map((s) => s.id), ['everything']);
  assert.equal(resultText(await client.callTool({ name: 'everything__echo', arguments: { message: 'b' } })), 'Echo: b');
});

it('a SIGHUP while the gateway is still starting is handled once it can be (not the end of it)', async (t) => {
  const data = tempDir('gatehouse-early-hup-');
  t.after(data.cleanup);
  fs.writeFileSync(path.join(data.dir, 'servers.json'), JSON.stringify({ mcpServers: {} }));
  const tick = () => new Promise((r) => setImmediate(r));
  // Start-up takes a few milliseconds: on a busy machine this process may not look in time, so a start in
  // which no SIGHUP went out before the gateway listened is tried again with a fresh database.
  for (let attempt = 0; attempt < 8; attempt++) {
    const proc = spawn(GATEHOUSE_BIN, ['serve'], {
      cwd: data.dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env, GATEWAY_HOST: '127.0.0.1', GATEWAY_PORT: '0',
        DATABASE_URL: `sqlite://${data.dir}/gh-${attempt}.db`, MCP_SERVERS_FILE: path.join(data.dir, 'servers.json'),
      },
    });
    t.after(() => proc.kill('SIGKILL'));
    let err = '';
    proc.stderr.on('data', (d) => { err += d; });
    proc.stdout.resume();
    const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    // SIGHUPs from its first log line (it is running: past exec and the loader) until it listens, as a
    // `systemctl reload` right after the service starts would send them.
    const deadline = Date.now() + 10000;
    while (err.length === 0 && proc.exitCode === null && Date.now() < deadline) await tick();
    let sent = 0;
    while (!err.includes('"listening"') && proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGHUP');
      sent++;
      await tick();
    }
    if (sent === 0 && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
      continue;
    }
    assert.equal(proc.signalCode, null, `the gateway died of ${proc.signalCode}: ${err}`);
    assert.ok(err.includes('"listening"'), err);
    await waitFor(() => err.includes('"servers reloaded"'), { timeoutMs: 5000, what: 'the reload the early SIGHUPs asked for' });
    proc.kill('SIGTERM');
    assert.deepEqual(await exited, { code: 0, signal: null });
    return;
  }
  assert.fail('in 8 starts, none was seen in time to send it a SIGHUP before it listened');
});
