// The real process with server.workers: 2 and the HTTP mode on: the workers
// share the HTTP port as they share the gRPC one (connections taken in turn,
// each worker with its own cache), the primary's /metrics counts their
// decisions with transport="http", and SIGTERM drains them and exits 0.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { answerByToken, startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { plainRequest } from '../support/http-client.js';
import { ensureBuilt, httpGet, logLines, run, samples, serving, within } from '../support/service-process.js';

t.before(ensureBuilt);

const TOKEN = 'http-workers-token-0123456789';
const fake = await startFakeAuthorizationServer(answerByToken({ [TOKEN]: { sub: 'alice', exp: Math.floor(Date.now() / 1000) + 3600 } }));
t.teardown(() => fake.close());
const dir = mkdtempSync(join(tmpdir(), 'authz-http-workers-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('two workers share the HTTP port', async (t) => {
  const file = join(dir, 'config.yaml');
  writeFileSync(
    file,
    `server:
  grpc: {host: 127.0.0.1, port: 0}
  ops: {host: 127.0.0.1, port: 0}
  http: {enabled: true, host: 127.0.0.1, port: 0}
  workers: 2
  shutdownTimeout: 2000
log:
  level: info
endpoints:
  - name: as
    url: ${fake.url}
    authMethod: none
`,
  );
  const proc = run(t, ['--config', file]);
  const { opsPort } = await serving(proc, 20_000);
  const line = logLines(proc.stdout()).find((l) => l.msg === 'serving')!;
  const httpPort = line.httpPort as number;
  t.type(httpPort, 'number', 'the serving line names the HTTP port');

  const statuses: number[] = [];
  for (let i = 0; i < 20; i += 1) {
    const answer = await plainRequest(httpPort, { path: '/envoy/default/x', headers: [['host', 'a.example'], ['authorization', `Bearer ${TOKEN}`]] });
    statuses.push(answer.status);
  }
  t.same(new Set(statuses), new Set([200]), 'every sub-request allowed');
  t.equal(fake.requests.length, 2, 'one introspection per worker (each has its own cache): both took connections');

  const m = samples((await httpGet(opsPort, '/metrics')).body);
  t.equal(m.get('authz_check_decisions_total{decision="allow",reason="ok",policy="default",transport="http"}'), 20, 'summed over the workers');

  proc.child.kill('SIGTERM');
  const exit = await within(proc.exited, 15_000, 'exit after SIGTERM');
  t.equal(exit.code, 0);
});
