/**
 * h2load driving gRPC unary Checks: one pre-encoded gRPC frame as the body of
 * every request, 8 connections x 16 streams by default, closed loop
 * (saturation) or open loop at a fixed total rate.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHECK_PATH, encodeCheckRequest, grpcFrame } from '../check-request.js';
import { runH2load, type H2loadResult } from '../h2load.js';
import type { Settings } from '../settings.js';
import { scratchDir } from '../support/processes.js';

const dir = scratchDir('authz-bench-bodies-');
let files = 0;

/** A data file holding the gRPC frame of the realistic CheckRequest with `token` (null: no Authorization). */
export function bodyFile(token: string | null): string {
  const file = join(dir, `check-${(files += 1)}.bin`);
  writeFileSync(file, grpcFrame(encodeCheckRequest(token)));
  return file;
}

export function bodyDir(): string {
  return dir;
}

export interface LoadOptions {
  /** Open loop at this total rate, split evenly over the clients (saturation without it). */
  totalRps?: number;
  /** The server's pid: its process tree's CPU is sampled over the measured part. */
  cpuPid?: number;
}

/** h2load at `port`. */
export function grpcLoad(port: number, dataFile: string, settings: Settings, { totalRps, cpuPid }: LoadOptions = {}): Promise<H2loadResult> {
  return runH2load({
    url: `http://127.0.0.1:${port}${CHECK_PATH}`,
    dataFile,
    headers: ['content-type: application/grpc', 'te: trailers'],
    clients: settings.clients,
    streams: settings.streams,
    durationS: settings.durationS,
    warmUpS: settings.warmUpS,
    ...(totalRps === undefined ? {} : { rpsPerClient: totalRps / settings.clients }),
    cpuPid,
  });
}

/** Requests h2load counted as failed at the HTTP/2 level: must be none. */
export function assertClean(result: H2loadResult, what: string): void {
  if (result.failed > 0 || result.errored > 0 || result.succeeded === 0) {
    throw new Error(`${what}: h2load saw ${result.failed} failed and ${result.errored} errored requests of ${result.done}`);
  }
}
