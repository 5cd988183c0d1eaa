/**
 * The bench's authorization server, in a process of its own so that its work
 * is not billed to the client loops: test/support's fake introspection
 * endpoint, answering every token active with a typical 12-member response
 * (tokens starting "inactive." are inactive), after an optional delay.
 * Driven over the IPC channel (see idp.ts); prints a JSON 'serving' line.
 */
import { activeClaims } from './claims.js';
import { startFakeAuthorizationServer, type FakeAuthorizationServer } from '../../test/support/fake-authorization-server.js';

export type IdpRequest = { op: 'count' | 'reset' } | { op: 'delay'; ms: number };
export type IdpCommand = IdpRequest & { id: number };

let delayMs = 0;
let count = 0;
let server: FakeAuthorizationServer | undefined;

server = await startFakeAuthorizationServer((request) => {
  count += 1;
  // The fake keeps every request for tests; the bench sends hundreds of thousands.
  if (server && server.requests.length > 1024) server.requests.length = 0;
  const token = request.body.get('token') ?? '';
  const json = token.startsWith('inactive.') || token === '' ? { active: false } : activeClaims(token);
  return delayMs > 0 ? { json, delayMs } : { json };
});

process.on('message', (message: IdpCommand) => {
  switch (message.op) {
    case 'count':
      break;
    case 'reset':
      count = 0;
      break;
    case 'delay':
      delayMs = message.ms;
      break;
  }
  process.send!({ id: message.id, count });
});
process.on('disconnect', () => process.exit(0));
process.stdout.write(`${JSON.stringify({ msg: 'serving', url: server.url, port: server.port })}\n`);
