/**
 * End to end, enforcement: dryRun: Envoy (a gRPC client built from the
 * upstream protos) -> this service -> a real authorization server. A
 * would-be deny goes on as anonymous and is logged and counted as
 * would_deny; a reload to enforce denies it, from the same cache.
 */
import t from 'tap';
import { startApp } from '../../src/app.js';
import { Authorizer } from '../../src/authorizer.js';
import { buildConfig, type Config } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startAuthorizationServer, type AuthorizationServer } from '../support/authorization-server.js';
import { connectEnvoy, structToJson, summarize, type UpstreamCheckResponse } from '../support/envoy.js';
import { samples } from '../support/service-process.js';

const as: AuthorizationServer = await startAuthorizationServer();
t.teardown(() => as.close());

function configOf(enforcement: 'enforce' | 'dryRun', warnings: string[] = []): Config {
  return buildConfig(
    {
      server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, shutdownTimeout: 1000 },
      // Denies only: a would-be deny must be logged as one.
      log: { level: 'info', decisions: 'deny' },
      cache: { validatedTokenTTL: 60 },
      endpoints: [
        {
          name: 'oidc',
          url: as.introspectionUrl,
          authMethod: 'client_secret_basic',
          clientId: as.introspectors.basic.clientId,
          clientSecret: as.introspectors.basic.clientSecret,
        },
      ],
      policies: [
        { name: 'default', endpoint: 'oidc' },
        { name: 'rollout', endpoint: 'oidc', scopes: 'admin', exposeHeaders: true, enforcement, match: [{ pathPrefix: '/rollout' }] },
      ],
      defaultPolicy: 'default',
    },
    'dry-run test',
    { env: {}, warn: (message) => warnings.push(message) },
  );
}

const lines: Array<Record<string, unknown>> = [];
const logger = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
const warnings: string[] = [];
const app = await startApp(configOf('dryRun', warnings), logger);
t.teardown(() => app.stop());
const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
t.teardown(() => envoy.close());

const tokens = { read: await as.issueToken({ scope: 'read' }), admin: await as.issueToken({ scope: 'admin' }) };
const spoofs = { 'x-auth-subject': 'mallory', 'x-auth-scope': 'admin', 'x-auth-status': 'authenticated' };

function check(token: string | null, requestId: string): Promise<UpstreamCheckResponse> {
  const authorization: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
  return envoy.check({ path: '/rollout/items', headers: { ...spoofs, ...authorization, 'x-request-id': requestId } });
}

function decisionLine(requestId: string): Record<string, unknown> | undefined {
  return lines.find((line) => line.msg === 'decision' && line.requestId === requestId);
}

async function metrics(): Promise<Map<string, number>> {
  return samples(await (await fetch(`http://127.0.0.1:${app.ops.port}/metrics`)).text());
}

t.test('a dryRun policy is warned about at load, naming the key', async (t) => {
  const about = (list: string[]) => list.filter((warning) => warning.includes('enforcement'));
  t.same(about(warnings), ['dry-run test: policies[1].enforcement: dryRun: policy rollout denies nothing (would-be denies go on as anonymous)']);
  const quiet: string[] = [];
  configOf('enforce', quiet);
  t.same(about(quiet), [], 'enforce: no warning');
});

t.test('dryRun: would-be denies go on as anonymous, logged and counted as would_deny by reason', async (t) => {
  for (const [name, token, reason, status] of [
    ['insufficient scope', tokens.read, 'insufficient_scope', 403],
    ['no token', null, 'missing_token', 401],
    ['garbage token', 'not-a-real-token', 'inactive', 401],
  ] as Array<[string, string | null, string, number]>) {
    const requestId = `dry-${reason}`;
    const response = await check(token, requestId);
    const r = summarize(response);
    t.equal(r.allowed, true, `${name}: allowed`);
    t.same(r.headers, { 'x-auth-status': 'anonymous' }, `${name}: nothing of the token, only the marker`);
    t.same(
      r.headersToRemove.sort(),
      [...(token === null ? [] : ['authorization']), 'x-auth-scope', 'x-auth-subject'],
      `${name}: spoofed copies removed, and the refused credential`,
    );
    t.same(structToJson(response.dynamic_metadata?.fields ?? {}), { policy: 'rollout', status: 'anonymous' }, `${name}: metadata`);
    t.match(decisionLine(requestId), { policy: 'rollout', decision: 'would_deny', reason, status: 200, wouldDenyStatus: status }, `${name}: log line`);
  }
  const m = await metrics();
  for (const reason of ['insufficient_scope', 'missing_token', 'inactive']) {
    t.equal(m.get(`authz_check_decisions_total{decision="would_deny",reason="${reason}",policy="rollout",transport="grpc"}`), 1, reason);
  }
  t.equal(m.get('authz_check_decisions_total{decision="allow",reason="dry_run",policy="rollout",transport="grpc"}'), undefined, 'never an allow');
  t.equal(m.get('authz_check_decisions_total{decision="deny",reason="insufficient_scope",policy="rollout",transport="grpc"}'), undefined);

  const allowed = summarize(await check(tokens.admin, 'dry-ok'));
  t.equal(allowed.allowed, true);
  t.equal(allowed.headers['x-auth-subject'], 'app-one', 'an allow is as under enforce');
  t.equal(allowed.headers['x-auth-scope'], 'admin');
  t.notOk(allowed.headersToRemove.includes('authorization'));
  t.equal(decisionLine('dry-ok'), undefined, 'an allow is not a deny line');
});

t.test('a reload to enforce keeps the cache: the answer seen in dryRun now denies, from the cache', async (t) => {
  t.same(app.reload(configOf('enforce')), []);
  const denied = summarize(await check(tokens.read, 'enforced-scope'));
  t.equal(denied.allowed, false);
  t.equal(denied.httpStatus, 403);
  t.match(decisionLine('enforced-scope'), { decision: 'deny', reason: 'insufficient_scope', cache: 'hit' }, 'the answer cached under dryRun');
  const m = await metrics();
  t.equal(m.get('authz_check_decisions_total{decision="deny",reason="insufficient_scope",policy="rollout",transport="grpc"}'), 1);

  t.same(app.reload(configOf('dryRun')), []);
  t.equal(summarize(await check(tokens.read, 'dry-again')).allowed, true, 'and back');
  t.match(decisionLine('dry-again'), { decision: 'would_deny', cache: 'hit' });
});

t.test('the authorizer hands its cache and introspector over when only enforcement changes', async (t) => {
  const first = new Authorizer(configOf('dryRun'));
  const second = new Authorizer(configOf('enforce'), { previous: first });
  t.equal(second.cache, first.cache);
  t.equal(second.introspector, first.introspector);
  await first.close();
  await second.close();
});
