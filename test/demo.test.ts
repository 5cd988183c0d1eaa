// `make demo` runs dist/demo/demo.js: it must show every section the README
// promises, in order, finish on its own and leave no process behind.
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { cleanEnv, ensureBuilt, ROOT, within } from './support/service-process.js';

t.before(() => ensureBuilt(['demo', 'test/support']));

/** Whether a process with this id still exists (signal 0 only checks). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

t.test('make demo: every section, in order, and nothing left running', async (t) => {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'demo', 'demo.js')], { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  // Generous: the demo takes a few seconds, a loaded CI machine starts Node and oidc-provider slowly.
  const code = await within(new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c))), 60_000, 'the demo');
  t.equal(code, 0, 'exit 0');
  t.equal(err, '', 'nothing on stderr');

  // Each section: its title, then what it must show before the next title.
  const sections: Array<[string, RegExp]> = [
    ['1. A request without a token', /HTTP 401[\s\S]*reason=missing_token/],
    ['2. A garbage token', /reason=inactive/],
    ['3. A fresh valid token', /ALLOW[\s\S]*x-auth-subject: app-one[\s\S]*cache=miss/],
    ['4. The same token on a second route', /HTTP 403[\s\S]*error="insufficient_scope"[\s\S]*scope="admin"[\s\S]*policy=reports/],
    ['5. The revoked token, right after revocation', /ALLOW[\s\S]*cache=hit/],
    ['DELETE /cache', /HTTP 200 \{"evicted":1\}/],
    ['6. The revoked token, after DELETE /cache', /HTTP 401[\s\S]*reason=inactive cache=miss/],
    ['Metrics at http://127.0.0.1:', /\/metrics[\s\S]*\n {2}authz_check_decisions_total\{decision="deny",reason="insufficient_scope",policy="reports",transport="grpc"\} 1\n {2}authz_cache_lookups_total\{result="hit"\} \d+\n/],
    ['7. A valid token while the authorization server is down', /HTTP 401[\s\S]*reason=introspection_error[\s\S]*ECONNREFUSED/],
    ['Again, with the circuit breaker open', /circuit breaker is open[\s\S]*authz_introspection_circuit_state\{endpoint="demo-idp"\} 2/],
    ['stopped on SIGTERM', /exit code 0/],
  ];
  let at = 0;
  for (const [index, [title, shows]] of sections.entries()) {
    const start = out.indexOf(title, at);
    if (!t.ok(start >= 0, `"${title}" appears after the previous section`)) break;
    const next = index + 1 < sections.length ? out.indexOf(sections[index + 1]![0], start + title.length) : out.length;
    t.match(out.slice(start, next < 0 ? out.length : next), shows, `"${title}" shows what it is for`);
    at = start + title.length;
  }
  // Every step says why, in one line under its title.
  for (const m of out.matchAll(/^(\d+(?:\.\d+)? .+)\n(.*)$/gm)) t.match(m[2]!, /^ {2}\S/, `"${m[1]}" is followed by its reason`);

  const pid = Number(/Service \(process (\d+)\) stopped/.exec(out)?.[1]);
  t.ok(Number.isInteger(pid) && pid > 0, 'the demo names the service process');
  t.notOk(alive(pid), 'the service process is gone');
  t.notMatch(out, /Bearer [A-Za-z0-9_-]{20,}/, 'no whole token is printed');
});
