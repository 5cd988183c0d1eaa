// A burst of Checks against an authorization server that hangs, with the
// defaults (authenticationTimeout 10 s, above Envoy's deadline): every Check
// must still be an OK RPC carrying a deny before the caller's deadline, while
// another process keeps one of the machine's cores busy. A failed RPC here is
// what Envoy turns into an error (or, with failure_mode_allow, an allow).
// The service runs as its own process, as it does under Envoy: the client's
// work does not share its event loop.
//
// A burst the machine cannot answer in time even without any introspection
// (a request with no token: an instant 401) proves nothing about deadlines:
// each round first measures how long the service takes to answer a burst of
// such Checks, and halves the burst until that takes at most a quarter of
// the deadline (a Check that introspects costs the service more than an
// instant 401: an HTTP request to start, a timer, a slot). The rounds then send that many Checks of new tokens to the
// hanging endpoint, and every one must come back as a deny, in time. The
// machine is shared: a round that misses is measured and tried again, up to
// ATTEMPTS times in all. Before the wheel, every attempt of every round missed.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { connectEnvoy, type EnvoyClient } from '../support/envoy.js';
import { startFakeAuthorizationServer } from '../support/fake-authorization-server.js';
import { ensureBuilt, run, serving, within } from '../support/service-process.js';

t.before(ensureBuilt);

const BURST = 1_000;
/** How long the busy child may spin at most (ms), should the teardown never come. */
const BUSY_FOR_MS = 120_000;

/** Another process spinning on one core for the whole test. */
function loadOneCore(): void {
  const child = spawn(process.execPath, ['-e', `const end = Date.now() + ${BUSY_FOR_MS}; while (Date.now() < end);`], {
    stdio: 'ignore',
  });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
}

interface Outcome {
  failed: Map<string, number>;
  allowed: number;
  denied: number;
  /** Least time left before the caller's deadline when an answer came (ms). */
  worstSlack: number;
}

/**
 * Tries of one round: another process taking the CPU at the wrong 100 ms stalls a whole burst
 * (tap runs other test files beside this one). Each retry halves the burst, so a stall's cost
 * shrinks with it; what must hold is that some burst is answered in full, in time.
 */
const ATTEMPTS = 5;

/** Smallest burst tried: below it, the machine is too busy to say anything. */
const MIN_BURST = 50;

/** Milliseconds the service takes to answer `size` Checks that need no introspection, sent at once. */
async function instantBurst(envoy: EnvoyClient, size: number): Promise<number> {
  const request = envoy.encode({ headers: {} });
  const started = performance.now();
  await Promise.all(Array.from({ length: size }, () => envoy.checkEncoded(request, 30_000).catch(() => undefined)));
  return performance.now() - started;
}

/** The largest burst, from BURST down by halves, whose instant answers all take at most `ms`. */
async function affordable(envoy: EnvoyClient, ms: number): Promise<{ size: number; took: number }> {
  let size = BURST;
  for (;;) {
    const took = await instantBurst(envoy, size);
    if (took <= ms || size <= MIN_BURST) return { size, took };
    size = Math.max(MIN_BURST, Math.floor(size / 2));
  }
}

async function burst(envoy: EnvoyClient, size: number, timeoutMs: number, round: number): Promise<Outcome> {
  const outcome: Outcome = { failed: new Map(), allowed: 0, denied: 0, worstSlack: Infinity };
  const requests = Array.from({ length: size }, (_, i) => envoy.encode({ headers: { authorization: `Bearer burst-${round}-${i}-token` } }));
  const answers: Buffer[] = [];
  await Promise.all(
    requests.map(async (bytes) => {
      const started = performance.now();
      try {
        answers.push(await envoy.checkEncoded(bytes, timeoutMs));
        outcome.worstSlack = Math.min(outcome.worstSlack, timeoutMs - (performance.now() - started));
      } catch (error) {
        const code = grpc.status[(error as grpc.ServiceError).code] ?? 'unknown';
        outcome.failed.set(code, (outcome.failed.get(code) ?? 0) + 1);
      }
    }),
  );
  for (const bytes of answers) {
    if ((envoy.decode(bytes).status?.code ?? 0) === 0) outcome.allowed += 1;
    else outcome.denied += 1;
  }
  return outcome;
}

t.test(`up to ${BURST} concurrent Checks against a hanging endpoint, one core busy: every one a deny in time`, async (t) => {
  const fake = await startFakeAuthorizationServer(() => ({ blackHole: true }));
  t.teardown(() => fake.close());
  const dir = mkdtempSync(join(tmpdir(), 'authz-burst-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'config.yaml');
  // failures 0: the circuit breaker would otherwise open after the first burst and
  // deny the next one at once, which would prove nothing about deadlines.
  writeFileSync(
    config,
    [
      'server: { grpc: { host: 127.0.0.1, port: 0 }, ops: { host: 127.0.0.1, port: 0 } }',
      'endpoints:',
      `  - { name: main, url: "${fake.url}", clientId: authz-service, clientSecret: s3cret, circuitBreaker: { failures: 0 } }`,
      'policies: [{ name: default }]',
      '',
    ].join('\n'),
  );
  const proc = run(t, ['--config', config]);
  const { grpcPort } = await serving(proc);
  const envoy = connectEnvoy(`127.0.0.1:${grpcPort}`);
  t.teardown(() => envoy.close());
  loadOneCore();
  // Warm up the connections (to the service, and its own to the endpoint) and the code
  // paths of a timed-out burst, unmeasured: a cold process's first burst is slow throughout.
  for (let i = 0; i < 2; i += 1) await burst(envoy, 300, 1_000, -1 - i);

  for (const [round, timeoutMs] of [200, 1_000, 200, 1_000].entries()) {
    let passed = false;
    const calibrated = await within(affordable(envoy, timeoutMs / 4), 120_000, `calibration ${round}`);
    let { size } = calibrated;
    const { took } = calibrated;
    for (let attempt = 1; attempt <= ATTEMPTS && !passed; attempt += 1) {
      if (attempt > 1) size = Math.max(MIN_BURST, Math.floor(size / 2));
      const outcome = await within(burst(envoy, size, timeoutMs, round * ATTEMPTS + attempt), timeoutMs + 30_000, `burst ${round}`);
      passed = outcome.failed.size === 0 && outcome.denied === size;
      t.comment(
        `${size} Checks at ${timeoutMs} ms, attempt ${attempt} (instant answers to as many: ${took.toFixed(0)} ms): ` +
          `${outcome.denied} denied, ${outcome.allowed} allowed, ` +
          `failed RPCs ${JSON.stringify(Object.fromEntries(outcome.failed))}, worst slack ${outcome.worstSlack.toFixed(1)} ms`,
      );
    }
    t.ok(passed, `${timeoutMs} ms: a burst with no failed RPC, every Check a deny, within ${ATTEMPTS} attempts`);
  }
});
