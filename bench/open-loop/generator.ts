/**
 * The open-loop load generator, run as its own process (so its CPU is not
 * the measured server's): gRPC Checks of one pre-encoded frame over a few
 * node:http2 connections, each request sent at its due time by the wall
 * clock whatever the earlier ones did (see schedule.ts). Node's timers have
 * a millisecond grain, coarser than the latencies measured, so a worker
 * thread sleeps precisely (Atomics.wait) until each due time and wakes the
 * main thread, whose event loop stays free to read answers the moment they
 * arrive. Reports to its parent over IPC: 'window' when the measured window
 * begins, 'window-end' when its last request has gone out, then 'done' with
 * the summary.
 */
import { readFileSync } from 'node:fs';
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { Worker } from 'node:worker_threads';
import { CHECK_PATH } from '../check-request.js';
import { isAllow } from '../support/raw-client.js';
import { dueCount, firstMeasured, Recorder, totalCount, type Outcome, type Schedule, type Summary } from './schedule.js';

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

const TICKER = `
const { workerData, parentPort } = require('node:worker_threads');
const { flags, start, interval, total } = workerData;
const now = () => Number(process.hrtime.bigint()) / 1e6;
for (let k = 0; k < total && Atomics.load(flags, 0) === 0; k += 1) {
  const wait = start + k * interval - now();
  if (wait > 0) Atomics.wait(flags, 0, 0, wait);
  // Late: skip to the current due time rather than wake the main thread for every missed one.
  else k = Math.max(k, Math.floor((now() - start) / interval));
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

async function main(options: GeneratorOptions): Promise<void> {
  const frame = readFileSync(options.frameFile);
  const sessions = await Promise.all(Array.from({ length: options.connections }, () => open(options.address)));
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

  const request = (i: number) => {
    const sentAt = now() - start;
    recorder.sent(i, sentAt);
    let endedAt: number | undefined;
    let status: string | undefined;
    const chunks: Buffer[] = [];
    const settle = (outcome: Outcome) => {
      recorder.ended(i, (endedAt ?? now()) - start, outcome);
      settled += 1;
      if (settled === total) finished();
    };
    let stream: ClientHttp2Stream;
    try {
      stream = sessions[i % sessions.length]!.request(headers);
    } catch (error) {
      firstError ??= (error as Error).message;
      settle('error');
      return;
    }
    stream.on('response', (head) => {
      if (head['grpc-status'] !== undefined) status = String(head['grpc-status']);
    });
    stream.on('trailers', (trailers) => {
      endedAt ??= now();
      status = String(trailers['grpc-status']);
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      endedAt ??= now();
    });
    stream.on('error', (error) => {
      firstError ??= error.message;
    });
    stream.on('close', () => {
      if (status !== '0' || endedAt === undefined) {
        firstError ??= `grpc-status ${status ?? 'missing'}, ${stream.rstCode ? `RST ${stream.rstCode}` : 'no RST'}`;
        return settle('error');
      }
      const body = Buffer.concat(chunks);
      const whole = body.length >= 5 && body.readUInt32BE(1) === body.length - 5;
      settle(whole && isAllow(body.subarray(5)) ? 'ok' : 'wrong');
    });
    stream.setTimeout(options.timeoutMs, () => stream.close(constants.NGHTTP2_CANCEL));
    stream.end(frame);
  };

  const flags = new Int32Array(new SharedArrayBuffer(8));
  const ticker = new Worker(TICKER, { eval: true, workerData: { flags, start, interval: 1000 / options.rate, total } });
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
