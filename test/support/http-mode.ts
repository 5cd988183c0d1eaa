/**
 * The service side of the HTTP mode's end-to-end tests: a fake authorization
 * server knowing a few tokens, and the service in this process with the
 * policies the shipped proxy configs name (default, admin), the HTTP mode on
 * and the admin route, all on loopback ports.
 */
import { startApp, type App } from '../../src/app.js';
import { buildConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { answerByToken, startFakeAuthorizationServer, type FakeAuthorizationServer } from './fake-authorization-server.js';
import type { Teardowns } from './service-process.js';

export const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
export const TOKENS = {
  /** Active, scope read: the default policy allows, admin refuses (insufficient_scope). */
  reader: 'reader-token-Aa11Bb22',
  /** Active, scope admin. */
  admin: 'admin-scope-token-Cc33Dd44',
  inactive: 'inactive-token-Ee55Ff66',
  /** Active until revoked (the test turns it inactive at the server). */
  revocable: 'revocable-token-Gg77Hh88',
} as const;

export interface HttpModeService {
  readonly app: App;
  readonly fake: FakeAuthorizationServer;
  readonly httpPort: number;
  /** The authorization server now answers this token as inactive (a revocation). */
  revoke(token: string): void;
  /** DELETE /cache of the token on the ops port; the status. */
  evict(token: string): Promise<number>;
}

export async function startHttpModeService(t: Teardowns): Promise<HttpModeService> {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const revoked = new Set<string>();
  const known = answerByToken({
    [TOKENS.reader]: { sub: 'reader-user', scope: 'read', exp },
    [TOKENS.admin]: { sub: 'admin-user', scope: 'read admin', exp },
    [TOKENS.revocable]: { sub: 'revocable-user', scope: 'read', exp },
    [TOKENS.inactive]: { active: false },
  });
  const fake = await startFakeAuthorizationServer((request) =>
    revoked.has(request.body.get('token') ?? '') ? { json: { active: false } } : known(request),
  );
  t.teardown(() => fake.close());
  const config = buildConfig(
    {
      server: {
        grpc: { host: '127.0.0.1', port: 0 },
        ops: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0 },
        http: { enabled: true, host: '127.0.0.1', port: 0, decisionTimeout: 3000 },
        shutdownTimeout: 1000,
      },
      log: { level: 'silent' },
      admin: { token: ADMIN_TOKEN },
      endpoints: [{ name: 'idp', url: fake.url, clientId: 'authz', clientSecret: 's3cret', authenticationTimeout: 2000 }],
      policies: [
        { name: 'default', hideCredentials: true },
        { name: 'admin', scopes: 'admin', realm: 'admin', unreachableStatus: 503 },
      ],
      defaultPolicy: 'default',
    },
    'http mode end-to-end',
    { env: {} },
  );
  const app = await startApp(config, createLogger('silent'));
  t.teardown(() => app.stop());
  return {
    app,
    fake,
    httpPort: app.http!.port,
    revoke: (token) => revoked.add(token),
    async evict(token) {
      const response = await fetch(`http://127.0.0.1:${app.admin!.port}/cache`, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
      });
      await response.arrayBuffer();
      return response.status;
    },
  };
}
