// The primary's supervision of its workers, with in-process fake workers that
// speak the IPC protocol: start-up, broadcasts and their time bound, restarts
// with backoff and their budget, and the stop that kills what will not drain.
import { EventEmitter } from 'node:events';
import t from 'tap';
import type { Start, ToWorker } from '../../src/cluster/protocol.js';
import { StartError, Supervisor, type SupervisorOptions } from '../../src/cluster/supervisor.js';
import { createLogger } from '../../src/observability/logger.js';

/** What a fake worker does with each message it is sent. */
type Behaviour = (worker: FakeWorker, message: ToWorker) => void;

let pids = 1000;

class FakeWorker extends EventEmitter {
  readonly process = { pid: (pids += 1) };
  readonly sent: ToWorker[] = [];
  killedWith: string | null = null;
  #alive = true;

  readonly behaviour: Behaviour;

  constructor(behaviour: Behaviour) {
    super();
    this.behaviour = behaviour;
    // A real worker speaks first, once it listens.
    setImmediate(() => this.message({ type: 'hello' }));
  }

  send(message: ToWorker): boolean {
    this.sent.push(message);
    if (!this.#alive) {
      setImmediate(() => this.emit('error', new Error('channel closed')));
      return false;
    }
    setImmediate(() => this.behaviour(this, message));
    return true;
  }

  kill(signal = 'SIGTERM'): void {
    this.killedWith = signal;
    this.die(null, signal);
  }

  message(message: object): void {
    if (this.#alive) this.emit('message', message);
  }

  die(code: number | null, signal: string | null = null): void {
    if (!this.#alive) return;
    this.#alive = false;
    setImmediate(() => this.emit('exit', code, signal));
  }
}

/** Serves at once, answers every request `{ ok: true, evicted: 1 }`, exits 0 on stop. */
const wellBehaved: Behaviour = (worker, message) => {
  if (message.type === 'start') worker.message({ type: 'serving', port: 4242 });
  else if (message.type === 'request') worker.message({ type: 'reply', id: message.id, reply: { ok: true, evicted: 1 } });
  else if (message.type === 'stop') worker.die(0);
};

function lines() {
  const logged: Array<Record<string, unknown>> = [];
  const logger = createLogger('info', { write: (line: string) => logged.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, logged };
}

function supervise(behaviours: Behaviour[] | Behaviour, options: Partial<SupervisorOptions> = {}) {
  const forked: FakeWorker[] = [];
  const { logger, logged } = lines();
  let restarts = 0;
  const supervisor = new Supervisor({
    workers: 2,
    fork: () => {
      const behaviour = Array.isArray(behaviours) ? behaviours[forked.length] ?? wellBehaved : behaviours;
      const worker = new FakeWorker(behaviour);
      forked.push(worker);
      return worker;
    },
    start: (slot): Start => ({ type: 'start', slot, text: 'text', source: 'config.yaml', pin: {} }),
    logger,
    onRestart: () => (restarts += 1),
    restartDelayMs: 1,
    maxRestartDelayMs: 4,
    ...options,
  });
  return { supervisor, forked, logged, restarts: () => restarts };
}

const until = async (condition: () => boolean, what: string, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

t.test('start: every worker asks, gets its slot, serves; the port is theirs', async (t) => {
  const { supervisor, forked } = supervise(wellBehaved);
  t.equal(supervisor.port, null, 'no port before a worker serves');
  t.equal(await supervisor.start(), 4242, 'resolves with the port once all serve');
  t.equal(supervisor.serving(), 2);
  t.equal(supervisor.size, 2);
  t.same(
    forked.map((w) => (w.sent[0] as Start).slot),
    [1, 2],
    'each worker got its own slot in its start message',
  );
  await supervisor.stop(1000);
});

t.test('a worker that reports another port is logged, and messages out of turn are ignored', async (t) => {
  const otherPort: Behaviour = (worker, message) => {
    if (message.type === 'start') {
      worker.message({ type: 'serving', port: 5555 });
      worker.message({ type: 'serving', port: 5555 }); // twice: the second is ignored
      worker.message({ type: 'hello' }); // out of turn
      worker.message({ type: 'reply', id: 999, reply: { ok: true } }); // answers nothing asked
      worker.message({ type: 'unknown' }); // not ours
    } else wellBehaved(worker, message);
  };
  const slowServe: Behaviour = (worker, message) => {
    if (message.type === 'start') setTimeout(() => worker.message({ type: 'serving', port: 4242 }), 20);
    else wellBehaved(worker, message);
  };
  const { supervisor, logged } = supervise([otherPort, slowServe]);
  await supervisor.start();
  t.equal(supervisor.port, 5555, 'the first port reported is the one');
  t.match(logged.find((l) => l.msg === 'worker serving on another port'), { level: 'warn', worker: 2, grpcPort: 4242, expected: 5555 });
  await supervisor.stop(1000);
});

t.test('start-up fails with the first worker that cannot start; the others are killed', async (t) => {
  await t.test('a worker that says why', async (t) => {
    const refuses: Behaviour = (worker, message) => {
      if (message.type === 'start') {
        worker.message({ type: 'failed', message: 'server.grpc.port: 127.0.0.1:1 is already in use', exitCode: 2 });
        worker.die(2);
      }
    };
    const hangs: Behaviour = () => {};
    const { supervisor, forked } = supervise([refuses, hangs]);
    await t.rejects(supervisor.start(), new StartError('server.grpc.port: 127.0.0.1:1 is already in use', 2));
    await until(() => forked[1]!.killedWith !== null, 'the other worker killed');
    t.equal(forked[1]!.killedWith, 'SIGKILL', 'the other worker was killed');
    t.equal(forked.length, 2, 'and nothing restarted');
  });

  await t.test('a worker that just dies', async (t) => {
    const dies: Behaviour = (worker, message) => {
      if (message.type === 'start') worker.die(null, 'SIGSEGV');
    };
    const { supervisor } = supervise([wellBehaved, dies]);
    const error = await supervisor.start().catch((e: StartError) => e);
    t.match(error, { message: 'worker 2 exited (SIGSEGV) before serving', exitCode: 1, code: 'ERR_WORKER_START' });
  });
});

t.test('broadcast: answers of the workers that have their configuration; time-bound; the dead left out', async (t) => {
  const silent: Behaviour = (worker, message) => {
    if (message.type === 'request') return; // never answers
    wellBehaved(worker, message);
  };
  const { supervisor, forked } = supervise([wellBehaved, silent]);
  await supervisor.start();
  const answers = await supervisor.broadcast({ type: 'metrics' }, 50);
  t.same(answers, [
    { slot: 1, reply: { ok: true, evicted: 1 } },
    { slot: 2, reply: { ok: false, error: 'worker 2 did not answer within 50 ms' } },
  ]);

  // A worker that dies with a question pending is left out of the answers.
  const asked = supervisor.broadcast({ type: 'evict', all: true, announce: true }, 2000);
  forked[1]!.die(1);
  t.same(await asked, [{ slot: 1, reply: { ok: true, evicted: 1 } }], 'the dead worker is left out');
  await supervisor.stop(1000);
});

t.test('a worker that dies is restarted with a growing delay, and counted', async (t) => {
  let now = 0;
  const { supervisor, forked, logged, restarts } = supervise(wellBehaved, { now: () => now });
  await supervisor.start();
  forked[0]!.die(1);
  await until(() => forked.length === 3 && supervisor.serving() === 2, 'the restart');
  t.equal(restarts(), 1, 'counted');
  t.match(logged.find((l) => l.msg === 'worker exited; restarting it'), { level: 'error', worker: 1, pid: forked[0]!.process.pid, code: 1, restartInMs: 1 });
  t.equal((forked[2]!.sent[0] as Start).slot, 1, 'the new worker takes the dead one\'s slot');

  forked[2]!.die(null, 'SIGKILL');
  await until(() => forked.length === 4 && supervisor.serving() === 2, 'the second restart');
  const delays = logged.filter((l) => l.msg === 'worker exited; restarting it').map((l) => l.restartInMs);
  t.same(delays, [1, 2], 'the delay doubles within a minute');

  now += 61_000;
  forked[3]!.die(1);
  await until(() => forked.length === 5 && supervisor.serving() === 2, 'a restart a minute later');
  t.same(logged.filter((l) => l.msg === 'worker exited; restarting it').map((l) => l.restartInMs), [1, 2, 1], 'a minute later it starts again from the first delay');

  await supervisor.stop(1000);
});

t.test('stop cancels a restart still waiting for its delay', async (t) => {
  const { supervisor, forked, logged } = supervise(wellBehaved, { restartDelayMs: 60_000, maxRestartDelayMs: 60_000 });
  await supervisor.start();
  forked[0]!.die(1);
  await until(() => logged.some((l) => l.msg === 'worker exited; restarting it'), 'the restart scheduled');
  t.equal(supervisor.serving(), 1, 'one worker down');
  t.equal(await supervisor.stop(1000), 0, 'the other stopped by itself');
  t.equal(forked.length, 2, 'and the dead one was not started again');
});

t.test('past the restart budget the supervisor gives up', async (t) => {
  const { supervisor, forked, logged } = supervise(wellBehaved, { maxRestartsPerMinute: 2, now: () => 0 });
  await supervisor.start();
  let gaveUp: Error | null = null;
  void supervisor.gaveUp.then((error) => (gaveUp = error));
  for (let round = 0; round < 3; round++) {
    const victim = forked.at(-1)!;
    victim.die(1);
    if (round < 2) await until(() => forked.length === 3 + round && supervisor.serving() === 2, `restart ${round + 1}`);
  }
  await until(() => gaveUp !== null, 'giving up');
  t.match(gaveUp, { message: 'more than 2 worker restarts within a minute' });
  t.match(logged.find((l) => l.msg === 'workers keep dying; giving up'), { level: 'fatal', restarts: 2 });
  t.equal(supervisor.serving(), 1, 'one worker is left serving');
  await supervisor.stop(1000);
});

t.test('a worker that cannot start again is logged with the reason, and restarted again', async (t) => {
  let starts = 0;
  const { supervisor, forked, logged } = supervise((worker, message) => {
    if (message.type === 'start' && (starts += 1) === 3) {
      worker.message({ type: 'failed', message: 'endpoints[0].clientSecretFile: cannot read /x: ENOENT', exitCode: 2 });
      worker.die(2);
    } else wellBehaved(worker, message);
  });
  await supervisor.start();
  forked[0]!.die(1);
  await until(() => forked.length === 4 && supervisor.serving() === 2, 'two restarts');
  t.match(logged.find((l) => l.msg === 'worker cannot start'), { level: 'error', worker: 1, err: 'endpoints[0].clientSecretFile: cannot read /x: ENOENT' });
  t.same(logged.filter((l) => l.msg === 'worker exited; restarting it').map((l) => l.code), [1, 2], 'both deaths restarted');
  await supervisor.stop(1000);
});

t.test('stop: every worker told to drain; one that does not exit in time is killed', async (t) => {
  const stubborn: Behaviour = (worker, message) => {
    if (message.type === 'stop') return; // ignores it
    wellBehaved(worker, message);
  };
  const { supervisor, forked } = supervise([wellBehaved, stubborn]);
  await supervisor.start();
  const killed = await supervisor.stop(50);
  t.equal(killed, 1, 'one worker had to be killed');
  t.equal(forked[0]!.killedWith, null, 'the other drained and exited by itself');
  t.equal(forked[1]!.killedWith, 'SIGKILL');
  t.same(forked.map((w) => w.sent.at(-1)?.type), ['stop', 'stop'], 'both were told to stop');
  t.same(await supervisor.broadcast({ type: 'metrics' }, 50), [], 'nobody left to ask');
  supervisor.kill(); // nothing left to kill: harmless
});
