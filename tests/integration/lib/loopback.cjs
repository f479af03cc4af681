'use strict';
// Preload (`node --require ./lib/loopback.cjs`) for servers that listen on every
// interface when given only a port (server-everything's express app does):
// a listen() without a host binds 127.0.0.1, so tests never open a port beyond loopback.
const net = require('node:net');

const LOOPBACK = '127.0.0.1';
const originalListen = net.Server.prototype.listen;

function isPort(value) {
  if (typeof value === 'number') return true;
  return typeof value === 'string' && /^\d+$/.test(value);
}

net.Server.prototype.listen = function listen(...args) {
  const [first, second] = args;
  if (args.length === 0 || typeof first === 'function') {
    // listen() / listen(cb): any port, loopback only
    return originalListen.call(this, 0, LOOPBACK, ...args);
  }
  if (isPort(first)) {
    // listen(port) / listen(port, cb) / listen(port, backlog, cb) → insert the host
    if (second === undefined || typeof second === 'function' || typeof second === 'number') {
      return originalListen.call(this, Number(first), LOOPBACK, ...args.slice(1));
    }
    return originalListen.apply(this, args);
  }
  if (first && typeof first === 'object' && !first.path && !first.fd && !first._handle && !first.handle
      && first.host === undefined) {
    return originalListen.call(this, { ...first, host: LOOPBACK }, ...args.slice(1));
  }
  return originalListen.apply(this, args);
};
