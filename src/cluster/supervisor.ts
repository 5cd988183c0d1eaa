/**
 * The primary's side of its workers: forks them, knows which are serving,
 * asks them all the same question (request/reply over IPC, bounded in time),
 * restarts one that dies (with a backoff, at most so many a minute), and
 * stops them all on shutdown. Knows nothing of configuration or metrics: the
 * primary (primary.ts) gives it the start message and the questions.
 */
import type { Logger } from '../observability/logger.js';
import { isFromWorker, type FromWorker, type Reply, type Request, type Start, type ToWorker } from './protocol.js';

/** What the supervisor needs of a forked worker (node:cluster's Worker). */
export interface WorkerProcess {
  readonly process: { readonly pid?: number | undefined };
  send(message: ToWorker): boolean;
  kill(signal?: string): void;
  on(event: string, listener: (...args: any[]) => void): unknown;
}

export interface SupervisorOptions {
  workers: number;
  fork(): WorkerProcess;
  /** The start message for the worker in `slot`, built when it asks (so it carries the configuration in force). */
  start(slot: number): Start;
  logger: Logger;
  /** Called once per restart of a worker that died. */
  onRestart?(): void;
  /** First restart delay in ms, doubled for each restart in the last minute (default 100). */
  restartDelayMs?: number;
  /** Longest restart delay in ms (default 5000). */
  maxRestartDelayMs?: number;
  /** More deaths than this within a minute and the supervisor gives up (default 10). */
  maxRestartsPerMinute?: number;
  now?(): number;
}

/** A worker could not start while the service was starting: the service does not start either. */
export class StartError extends Error {
  readonly code = 'ERR_WORKER_START';
  readonly exitCode: number;

  constructor(message: string, exitCode: number) {
    super(message);
    this.exitCode = exitCode;
  }
}

type State = 'forked' | 'starting' | 'serving' | 'stopping' | 'down';

interface Pending {
  resolve(reply: Reply | null): void;
  timer: NodeJS.Timeout;
}

interface Slot {
  readonly index: number;
  state: State;
  worker: WorkerProcess | null;
  pending: Map<number, Pending>;
  exited: Promise<void>;
}

export interface Answer {
  slot: number;
  reply: Reply;
}

const MINUTE = 60_000;

export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #slots: Slot[];
  readonly #now: () => number;
  #deaths: number[] = [];
  #timers = new Set<NodeJS.Timeout>();
  #nextId = 1;
  #stopping = false;
  #started = false;
  #port: number | null = null;
  #httpPort: number | null = null;
  #startup: { resolve(port: number): void; reject(error: StartError): void } | null = null;
  #failure: { message: string; exitCode: number } | null = null;
  #giveUp!: (error: Error) => void;
  /** Resolves when workers die faster than the restart budget allows: the service should stop. */
  readonly gaveUp = new Promise<Error>((resolve) => (this.#giveUp = resolve));

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#slots = Array.from({ length: options.workers }, (_, i) => ({
      index: i + 1,
      state: 'down' as State,
      worker: null,
      pending: new Map(),
      exited: Promise.resolve(),
    }));
  }

  /** Fork every worker; resolves with the gRPC port once all serve, rejects with the first start-up failure. */
  start(): Promise<number> {
    const started = new Promise<number>((resolve, reject) => (this.#startup = { resolve, reject }));
    for (const slot of this.#slots) this.#fork(slot);
    return started;
  }

  /** The gRPC port the workers share (once one has served). */
  get port(): number | null {
    return this.#port;
  }

  /** The HTTP authorization port the workers share (once one has served), null when server.http is off. */
  get httpPort(): number | null {
    return this.#httpPort;
  }

  get size(): number {
    return this.#slots.length;
  }

  /** How many workers are answering Checks now. */
  serving(): number {
    return this.#slots.filter((slot) => slot.state === 'serving').length;
  }

  /**
   * Ask every worker that has its configuration (starting, serving or
   * draining). A worker that exits before answering is left out; one that does
   * not answer within `timeoutMs` is answered for with an error.
   */
  /** @param request the request, or per worker, made from its slot number and whether it is serving */
  async broadcast(request: Request | ((slot: { index: number; serving: boolean }) => Request), timeoutMs: number): Promise<Answer[]> {
    const asked = this.#slots.filter((slot) => slot.state === 'starting' || slot.state === 'serving' || slot.state === 'stopping');
    const replies = await Promise.all(
      asked.map(
        (slot) =>
          new Promise<Reply | null>((resolve) => {
            const id = this.#nextId++;
            const timer = setTimeout(() => {
              slot.pending.delete(id);
              resolve({ ok: false, error: `worker ${slot.index} did not answer within ${timeoutMs} ms` });
            }, timeoutMs);
            slot.pending.set(id, { resolve, timer });
            const sent = typeof request === 'function' ? request({ index: slot.index, serving: slot.state === 'serving' }) : request;
            slot.worker!.send({ type: 'request', id, request: sent });
          }),
      ),
    );
    const answers: Answer[] = [];
    replies.forEach((reply, i) => {
      if (reply !== null) answers.push({ slot: asked[i]!.index, reply });
    });
    return answers;
  }

  /**
   * Tell every worker to drain; those still running after `timeoutMs` are
   * killed. Resolves once all have exited, with how many had to be killed.
   */
  async stop(timeoutMs: number): Promise<number> {
    this.#stopping = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    const running = this.#slots.filter((slot) => slot.worker !== null);
    for (const slot of running) {
      slot.state = 'stopping';
      slot.worker!.send({ type: 'stop' });
    }
    const all = Promise.all(running.map((slot) => slot.exited));
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (!late) return 0;
    const stuck = running.filter((slot) => slot.worker !== null);
    for (const slot of stuck) slot.worker!.kill('SIGKILL');
    await all;
    return stuck.length;
  }

  /** Kill every worker at once (the primary is exiting without a drain). */
  kill(): void {
    this.#stopping = true;
    for (const slot of this.#slots) slot.worker?.kill('SIGKILL');
  }

  #fork(slot: Slot): void {
    const worker = this.#options.fork();
    slot.worker = worker;
    slot.state = 'forked';
    let exited!: () => void;
    slot.exited = new Promise((resolve) => (exited = resolve));
    // A send to a worker that has just died fails here; its exit is handled below.
    worker.on('error', () => {});
    worker.on('message', (message: unknown) => {
      if (isFromWorker(message)) this.#onMessage(slot, worker, message);
    });
    worker.on('exit', (code: number | null, signal: string | null) => {
      this.#onExit(slot, worker, code, signal);
      exited();
    });
  }

  #onMessage(slot: Slot, worker: WorkerProcess, message: FromWorker): void {
    if (slot.worker !== worker) return;
    switch (message.type) {
      case 'hello':
        if (slot.state !== 'forked') return;
        slot.state = 'starting';
        worker.send(this.#options.start(slot.index));
        return;
      case 'serving':
        if (slot.state !== 'starting') return;
        slot.state = 'serving';
        // node:cluster shares one listening socket per address and port, 0 included: every worker reports the same ports.
        this.#httpPort ??= message.httpPort ?? null;
        if (this.#port === null) this.#port = message.port;
        else if (message.port !== this.#port) {
          this.#options.logger.warn({ worker: slot.index, grpcPort: message.port, expected: this.#port }, 'worker serving on another port');
        }
        if (!this.#started && this.serving() === this.#slots.length) {
          this.#started = true;
          this.#startup?.resolve(this.#port);
        }
        return;
      case 'failed':
        // While the service starts, start() reports it; later the worker is restarted, and this says why it died.
        if (this.#started) this.#options.logger.error({ worker: slot.index, err: message.message }, 'worker cannot start');
        else this.#failure ??= { message: message.message, exitCode: message.exitCode };
        return;
      case 'reply': {
        const pending = slot.pending.get(message.id);
        if (!pending) return;
        slot.pending.delete(message.id);
        clearTimeout(pending.timer);
        pending.resolve(message.reply);
      }
    }
  }

  #onExit(slot: Slot, worker: WorkerProcess, code: number | null, signal: string | null): void {
    const pid = worker.process.pid;
    const wasStopping = slot.state === 'stopping';
    slot.worker = null;
    slot.state = 'down';
    for (const pending of slot.pending.values()) {
      clearTimeout(pending.timer);
      pending.resolve(null);
    }
    slot.pending.clear();
    if (this.#stopping || wasStopping) return;
    if (!this.#started) {
      // While the service starts, a worker that cannot start means the service cannot.
      const failure = this.#failure ?? { message: `worker ${slot.index} exited (${signal ?? code}) before serving`, exitCode: 1 };
      this.#startup?.reject(new StartError(failure.message, failure.exitCode));
      this.#startup = null;
      this.kill();
      return;
    }
    const now = this.#now();
    this.#deaths = this.#deaths.filter((at) => now - at < MINUTE);
    const budget = this.#options.maxRestartsPerMinute ?? 10;
    if (this.#deaths.length >= budget) {
      this.#options.logger.fatal({ worker: slot.index, pid, code, signal, restarts: this.#deaths.length }, 'workers keep dying; giving up');
      this.#giveUp(new Error(`more than ${budget} worker restarts within a minute`));
      return;
    }
    const base = this.#options.restartDelayMs ?? 100;
    const delay = Math.min(base * 2 ** this.#deaths.length, this.#options.maxRestartDelayMs ?? 5000);
    this.#deaths.push(now);
    this.#options.onRestart?.();
    this.#options.logger.error({ worker: slot.index, pid, code, signal, restartInMs: delay }, 'worker exited; restarting it');
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      this.#fork(slot);
    }, delay);
    this.#timers.add(timer);
  }
}
