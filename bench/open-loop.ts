/**
 * Open-loop runs at a fixed offered rate: bench/open-loop/generator.ts in a
 * process of its own, its measured window bracketed by CPU samples of the
 * server under test (the generator says over IPC when the window begins
 * and when its last request has gone out).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { within } from '../test/support/service-process.js';
import type { GeneratorMessage, GeneratorOptions } from './open-loop/generator.js';
import type { Summary } from './open-loop/schedule.js';
import { cpuWindow, msPerCheck, sampleCpu, type CpuSample, type CpuWindow } from './support/cpu.js';
import { benchScript } from './support/paths.js';
import { scratchDir, startNode, stopProc } from './support/processes.js';

export interface OpenLoopRun extends Summary {
  /** The generator's CPU over its whole run, in cores (1.0: one core busy). */
  generatorCpu: number;
  /** What the first failed request saw, if one did. */
  firstError: string | null;
  /** The server's CPU over the measured window, and per Check answered in it. */
  cpu: { window: CpuWindow; msPerCheck: number } | null;
}

/**
 * Every node:http2 stream survives the scavenges until a full GC (its native
 * handle keeps it), so each scavenge copies all the streams made since the
 * one before: at the default 16 MB semi-space that was a 3-6 ms pause every
 * few hundred ms, sends due meanwhile all that late. A 1 MB semi-space makes
 * the pauses ten times more frequent and as much shorter (p50 0.5 ms at
 * 2,000/s, measured with --trace-gc), for about the same GC time in all.
 */
const GENERATOR_FLAGS = ['--max-semi-space-size=1'];

const dir = scratchDir('authz-bench-open-loop-');
let frames = 0;

export async function runOpenLoop(options: Omit<GeneratorOptions, 'frameFile'> & { frame: Buffer }, cpuPid: number): Promise<OpenLoopRun> {
  const { frame, ...rest } = options;
  const frameFile = join(dir, `frame-${(frames += 1)}.bin`);
  writeFileSync(frameFile, frame);
  const generator: GeneratorOptions = { ...rest, frameFile };
  const proc = startNode(benchScript('open-loop/generator.js'), [JSON.stringify(generator)], { nodeFlags: GENERATOR_FLAGS, ipc: true, serialization: 'advanced' });
  try {
    let first: CpuSample | undefined;
    let last: CpuSample | undefined;
    const done = new Promise<GeneratorMessage & { phase: 'done' }>((resolve, reject) => {
      proc.child.on('message', (message: GeneratorMessage) => {
        if (message.phase === 'window') first = sampleCpu(cpuPid);
        else if (message.phase === 'window-end') last = sampleCpu(cpuPid);
        else resolve(message);
      });
      proc.exited.then((exit) => reject(new Error(`the open-loop generator exited (${exit.code ?? exit.signal}) without a summary: ${proc.stderr().slice(-500)}`)));
    });
    const limitMs = (options.warmUpS + options.durationS) * 1000 + options.timeoutMs + 15_000;
    const { summary, generatorCpu, firstError } = await within(done, limitMs, 'the open-loop generator');
    const window = first && last ? cpuWindow(first, last) : null;
    return { ...summary, generatorCpu, firstError, cpu: window ? { window, msPerCheck: msPerCheck(window, summary.ok + summary.wrong) } : null };
  } finally {
    await stopProc(proc);
  }
}
