// Minimal, fast MCP (Streamable HTTP, JSON responses) upstream for benchmarks.
// Runs inside nginx's njs module (Debian libnginx-mod-http-js, njs 0.7.x).
// Answers initialize (with an Mcp-Session-Id), notifications and client
// responses (202), tools/list, tools/call (tool "echo": text "Echo: <message>",
// like @modelcontextprotocol/server-everything), ping; echoes the JSON-RPC id.

var VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05'];
var TOOLS = [{
    name: 'echo',
    title: 'Echo Tool',
    description: 'Echoes back the input string',
    inputSchema: {
        type: 'object',
        properties: { message: { type: 'string', description: 'Message to echo' } },
        required: ['message']
    }
}];

function sessionId() {
    var s = '';
    for (var i = 0; i < 4; i++) {
        s += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0');
    }
    return s;
}

function rpcResult(id, result) {
    return { jsonrpc: '2.0', id: id, result: result };
}

function rpcError(id, code, message) {
    return { jsonrpc: '2.0', id: id, error: { code: code, message: message } };
}

// Returns a response object, or null for notifications / client responses.
function answer(r, msg) {
    if (msg === null || typeof msg !== 'object' || msg.jsonrpc !== '2.0') {
        return rpcError(null, -32600, 'Invalid Request');
    }
    if (typeof msg.method !== 'string') {
        return null; // a response to a server request: accepted, nothing to say
    }
    var isNotification = !('id' in msg);
    if (isNotification) {
        return null;
    }
    var id = msg.id;
    var params = msg.params || {};
    switch (msg.method) {
    case 'initialize':
        var v = params.protocolVersion;
        r.headersOut['Mcp-Session-Id'] = sessionId();
        return rpcResult(id, {
            protocolVersion: VERSIONS.indexOf(v) >= 0 ? v : VERSIONS[0],
            capabilities: { tools: { listChanged: false } },
            serverInfo: { name: 'bench-njs-upstream', version: '1.0.0' }
        });
    case 'ping':
        return rpcResult(id, {});
    case 'tools/list':
        return rpcResult(id, { tools: TOOLS });
    case 'tools/call':
        if (params.name !== 'echo') {
            return rpcError(id, -32602, 'Unknown tool: ' + params.name);
        }
        var args = params.arguments || {};
        if (typeof args.message !== 'string') {
            return rpcResult(id, {
                content: [{ type: 'text', text: 'message must be a string' }],
                isError: true
            });
        }
        return rpcResult(id, { content: [{ type: 'text', text: 'Echo: ' + args.message }] });
    default:
        return rpcError(id, -32601, 'Method not found: ' + msg.method);
    }
}

function send(r, status, obj) {
    r.headersOut['Content-Type'] = 'application/json';
    r.return(status, JSON.stringify(obj));
}

function handle(r) {
    if (r.method === 'DELETE') {
        r.return(200, '');
        return;
    }
    if (r.method !== 'POST') {
        // No standalone SSE stream offered (allowed by the spec).
        r.headersOut['Allow'] = 'POST, DELETE';
        r.return(405, '');
        return;
    }
    var body;
    try {
        body = JSON.parse(r.requestText || '');
    } catch (e) {
        send(r, 400, rpcError(null, -32700, 'Parse error'));
        return;
    }
    if (Array.isArray(body)) {
        var out = [];
        for (var i = 0; i < body.length; i++) {
            var a = answer(r, body[i]);
            if (a !== null) {
                out.push(a);
            }
        }
        if (out.length === 0) {
            r.return(202, '');
        } else {
            send(r, 200, out);
        }
        return;
    }
    var res = answer(r, body);
    if (res === null) {
        r.return(202, '');
    } else {
        send(r, 200, res);
    }
}

export default { handle };
