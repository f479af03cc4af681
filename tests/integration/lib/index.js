// The integration harness in one import.
export * from './procs.js';
export * from './gatehouse.js';
export * from './upstreams.js';
export * from './client.js';
export * from './raw.js';
export * from './auth.js';
export * from './store.js';
