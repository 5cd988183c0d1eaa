// A hostile authorization server answers a claim nested 6,000 levels deep
// (12 KB, well under maxResponseBytes) to the real program with the Redis
// tier on. Writing that answer to Redis once ran JSON.stringify into a stack
// overflow inside a promise chain nobody handled, and the process died with
// every Check in flight. Now: that Check is a bad_response deny, a Check of
// another token in flight at the same time is allowed, and the process lives.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { connectEnvoy, summarize } from '../support/envoy.js';
import { startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { startRedisServer } from '../support/redis-server.js';
import { ensureBuilt, logLines, run, serving, sleep, waitFor } from '../support/service-process.js';

t.before(ensureBuilt);

const DEEP = 'deep-answer-token-Hq3v9XkA0p';
const GOOD = 'good-answer-token-Rt5m2WcB7n';
const LEVELS = 6000;

t.test('a claim 6,000 levels deep is a bad_response deny; the process and a concurrent Check are unaffected', async (t) => {
  const redis = await startRedisServer();
  t.teardown(() => redis.stop());
  const deepClaim = '{"a":'.repeat(LEVELS) + '1' + '}'.repeat(LEVELS);
  const fake = await startFakeAuthorizationServer((request) => {
    const token = request.body.get('token');
    const exp = Math.floor(Date.now() / 1000) + 3600;
    if (token === DEEP) {
      return { body: `{"active":true,"sub":"mallory","exp":${exp},"nested":${deepClaim}}`, headers: { 'content-type': 'application/json' } };
    }
    // Slow enough to be in flight when the deep answer is handled.
    if (token === GOOD) return { json: { active: true, sub: 'alice', exp }, delayMs: 300 };
    return { json: { active: false } };
  });
  t.teardown(() => fake.close());

  const dir = mkdtempSync(join(tmpdir(), 'authz-deep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'config.yaml');
  writeFileSync(
    path,
    `server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
log:
  level: info
redis:
  url: ${redis.url}
  keySecret: deep-answer-key-secret-0123456789abcdef
  keyPrefix: "deep:"
endpoints:
  - name: hostile
    url: ${fake.url}
    authMethod: none
    maxResponseBytes: 65536
`,
  );
  const proc = run(t, ['--config', path]);
  const { grpcPort } = await serving(proc);
  const envoy = connectEnvoy(`127.0.0.1:${grpcPort}`);
  t.teardown(() => envoy.close());
  const check = (token: string) => envoy.check({ headers: { authorization: `Bearer ${token}` }, timeoutMs: 5000 }).then(summarize);

  const good = check(GOOD);
  // Let the slow introspection start before the deep answer arrives.
  await waitFor(() => (fake.requests.length >= 1 ? true : undefined), 5000, 'the good token being introspected');
  const deep = await check(DEEP);
  t.equal(deep.allowed, false, 'the deep answer is a deny, not a failed RPC');
  t.equal(deep.httpStatus, 500, 'with the bad-response status');
  t.equal((await good).allowed, true, 'the Check in flight at the same time is allowed');

  const decisions = await waitFor(() => {
    const lines = logLines(proc.stdout()).filter((line) => line.msg === 'decision');
    return lines.length >= 2 ? lines : undefined;
  }, 5000, 'two decision lines');
  t.match(decisions.find((line) => line.decision === 'deny'), { reason: 'bad_response' });

  // The process is still there, and still answers from its cache.
  await sleep(200);
  t.equal(proc.child.exitCode, null, 'the process did not exit');
  t.equal((await check(GOOD)).allowed, true, 'a later Check is answered');
  t.notMatch(proc.stderr(), /fatal/, 'nothing went unhandled');
});
