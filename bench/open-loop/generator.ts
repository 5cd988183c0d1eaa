/**
 * The open-loop load generator, run as its own process (so its CPU is not
 * the measured server's): gRPC Checks of one pre-encoded frame over a few
 * node:http2 connections, each request sent at its due time by the wall
 * clock whatever the earlier ones did (see schedule.ts). Node's timers have
 * a millisecond grain, coarser than the latencies measured, so a worker
 * thread sleeps precisely (Atomics.wait) until each due time (at most every
 * WAKE_GAP_MS) and wakes the main thread, which sends everything then due and
 * whose event loop stays free to read answers the moment they arrive. Its
 * lateness is in every figure, so the per-request path allocates little: one
 * small record, shared handlers, no timer. Reports to its parent over IPC: 'window' when the measured window
 * begins, 'window-end' when its last request has gone out, then 'done' with
 * the summary.
 */
import { readFileSync } from 'node:fs';
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { Worker } from 'node:worker_threads';
import { CHECK_PATH } from '../check-request.js';
import { isAllow } from '../support/raw-client.js';
import { dueCount, firstMeasured, InFlight, Recorder, totalCount, wakeUps, type Outcome, type Schedule, type Summary } from './schedule.js';

export interface GeneratorOptions extends Schedule {
  address: string;
  /** A file holding the gRPC frame (5-byte prefix and the CheckRequest) sent as every request's body. */
  frameFile: string;
  connections: number;
  /** A request not answered within this is cancelled and counted as an error. */
  timeoutMs: number;
}

export type GeneratorMessage =
  | { phase: 'window' }
  | { phase: 'window-end' }
  | { phase: 'done'; summary: Summary; generatorCpu: number; firstError: string | null };

/** Wake-ups no closer than this (see wakeUps): well under the 1 ms of lateness a row may show before it is marked BEHIND. */
const WAKE_GAP_MS = 0.25;

const TICKER = `
const { workerData, parentPort } = require('node:worker_threads');
const { flags, start, step, count } = workerData;
const now = () => Number(process.hrtime.bigint()) / 1e6;
for (let k = 0; k < count && Atomics.load(flags, 0) === 0; k += 1) {
  const wait = start + k * step - now();
  if (wait > 0) Atomics.wait(flags, 0, 0, wait);
  // Late: skip to the current wake-up time rather than wake the main thread for every missed one.
  else k = Math.max(k, Math.floor((now() - start) / step));
  // One wake-up pending at a time: the main thread sends everything due when it gets to it.
  if (Atomics.compareExchange(flags, 1, 0, 1) === 0) parentPort.postMessage(0);
}
// The last due time has passed: one wake-up whatever the pending flag says, or a skipped one could strand the tail of the schedule.
if (Atomics.load(flags, 0) === 0) parentPort.postMessage(0);
`;

const now = () => Number(process.hrtime.bigint()) / 1e6;
const send = (message: GeneratorMessage) => process.send!(message);

function open(address: string): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    // An open loop may hold thousands of streams when the server falls behind; past the default 10 MB nghttp2 refuses new ones (ENHANCE_YOUR_CALM).
    const session = connect(`http://${address}`, { maxSessionMemory: 256 });
    session.once('connect', () => {
      // Later failures fail the session's streams, which count as errors.
      session.on('error', () => {});
      resolve(session);
    });
    session.once('error', reject);
  });
}

/** One request in flight; the stream's handlers are shared functions that find it on the stream, not closures made per request. */
interface Call {
  i: number;
  sentAt: number;
  endedAt: number;
  status: string | undefined;
  /** The answer's body: one chunk as a rule, a list if it came in several. */
  body: Buffer | Buffer[] | null;
  settled: boolean;
  /** Until settled: the sweep's way to cancel it (dropped then, not to hold the stream until the sweep passes). */
  stream: ClientHttp2Stream | null;
}

const CALL = Symbol('call');
type Tracked = ClientHttp2Stream & { [CALL]: Call };

async function main(options: GeneratorOptions): Promise<void> {
  const frame = readFileSync(options.frameFile);
  const sessions = await Promise.all(Array.from({ length: options.connections }, () => open(options.address)));
  // One headers object for every request: node:http2 reads it, never keeps or changes it.
  const headers = {
    ':method': 'POST',
    ':path': CHECK_PATH,
    'content-type': 'application/grpc',
    te: 'trailers',
    'grpc-timeout': `${options.timeoutMs}m`,
  };
  const recorder = new Recorder(options);
  const total = totalCount(options);
  const measuredFrom = firstMeasured(options);
  let next = 0;
  let settled = 0;
  let firstError: string | null = null;
  let finished: () => void = () => {};
  const allSettled = new Promise<void>((resolve) => (finished = resolve));
  const start = now() + 20;
  // The answer every request should get: once one body was found an allow, the same bytes need not be parsed again.
  let knownAllow: Buffer | undefined;

  const settle = (call: Call, outcome: Outcome) => {
    call.settled = true;
    call.stream = null;
    call.body = null;
    recorder.ended(call.i, (Number.isNaN(call.endedAt) ? now() : call.endedAt) - start, outcome);
    settled += 1;
    if (settled === total) finished();
  };
  function onResponse(this: Tracked, head: IncomingHttpHeaders) {
    const status = head['grpc-status'];
    // Trailers-only: the status in the headers is the end of the answer.
    if (status !== undefined) {
      this[CALL].status = String(status);
      this[CALL].endedAt = now();
    }
  }
  function onTrailers(this: Tracked, trailers: IncomingHttpHeaders) {
    const call = this[CALL];
    if (Number.isNaN(call.endedAt)) call.endedAt = now();
    call.status = String(trailers['grpc-status']);
  }
  function onData(this: Tracked, chunk: Buffer) {
    const call = this[CALL];
    if (call.body === null) call.body = chunk;
    else if (Array.isArray(call.body)) call.body.push(chunk);
    else call.body = [call.body, chunk];
  }
  function onError(this: Tracked, error: Error) {
    firstError ??= error.message;
  }
  function onClose(this: Tracked) {
    const call = this[CALL];
    if (call.status !== '0' || Number.isNaN(call.endedAt)) {
      firstError ??= `grpc-status ${call.status ?? 'missing'}, ${this.rstCode ? `RST ${this.rstCode}` : 'no RST'}`;
      return settle(call, 'error');
    }
    const body = call.body === null ? Buffer.alloc(0) : Array.isArray(call.body) ? Buffer.concat(call.body) : call.body;
    if (knownAllow !== undefined && body.equals(knownAllow)) return settle(call, 'ok');
    const whole = body.length >= 5 && body.readUInt32BE(1) === body.length - 5;
    if (whole && isAllow(body.subarray(5))) {
      knownAllow ??= Buffer.from(body);
      return settle(call, 'ok');
    }
    settle(call, 'wrong');
  }

  const inFlight = new InFlight<Call>();
  const sweep = setInterval(() => {
    for (const call of inFlight.takeOverdue(now() - options.timeoutMs)) call.stream?.close(constants.NGHTTP2_CANCEL);
  }, Math.min(100, options.timeoutMs / 4));

  const request = (i: number) => {
    const sentAt = now();
    recorder.sent(i, sentAt - start);
    let stream: Tracked;
    try {
      stream = sessions[i % sessions.length]!.request(headers) as Tracked;
    } catch (error) {
      firstError ??= (error as Error).message;
      settle({ i, sentAt, endedAt: Number.NaN, status: undefined, body: null, settled: false, stream: null }, 'error');
      return;
    }
    const call: Call = { i, sentAt, endedAt: Number.NaN, status: undefined, body: null, settled: false, stream };
    stream[CALL] = call;
    inFlight.add(call);
    stream.on('response', onResponse);
    stream.on('trailers', onTrailers);
    stream.on('data', onData);
    stream.on('error', onError);
    stream.on('close', onClose);
    stream.end(frame);
  };

  const flags = new Int32Array(new SharedArrayBuffer(8));
  const ticker = new Worker(TICKER, { eval: true, workerData: { flags, start, ...wakeUps(options, WAKE_GAP_MS) } });
  let tickerFailed: Error | undefined;
  ticker.on('error', (error) => {
    tickerFailed = error;
    finished();
  });
  const pump = () => {
    Atomics.store(flags, 1, 0);
    const due = dueCount(options, now() - start);
    if (next <= measuredFrom && due > measuredFrom) send({ phase: 'window' });
    while (next < due) request(next++);
    if (next === total) {
      send({ phase: 'window-end' });
      Atomics.store(flags, 0, 1);
      Atomics.notify(flags, 0);
      ticker.off('message', pump);
    }
  };
  ticker.on('message', pump);

  const cpuAtStart = process.cpuUsage();
  const scheduleMs = ((options.warmUpS + options.durationS) * 1000) + 20;
  // Bounded: the schedule, then the last answers' timeout, then a margin.
  const deadline = setTimeout(finished, scheduleMs + options.timeoutMs + 1000);
  await allSettled;
  clearTimeout(deadline);
  clearInterval(sweep);
  const cpu = process.cpuUsage(cpuAtStart);
  const wall = now() - start;
  await ticker.terminate();
  if (tickerFailed) throw tickerFailed;
  for (const session of sessions) session.destroy();
  send({ phase: 'done', summary: recorder.summary(), generatorCpu: (cpu.user + cpu.system) / 1000 / wall, firstError });
}

main(JSON.parse(process.argv[2] ?? '{}') as GeneratorOptions).then(
  () => process.disconnect(),
  (error: unknown) => {
    process.stderr.write(`open-loop generator: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
