/**
 * Preloaded into the service process for the memory scenario only
 * (`node --expose-gc --import <this> dist/src/main.js`): on SIGUSR2 it runs a
 * full garbage collection and writes process.memoryUsage() as JSON to
 * $BENCH_MEMORY_FILE. The service itself is untouched.
 */
import { writeFileSync } from 'node:fs';

const file = process.env.BENCH_MEMORY_FILE;
if (file) {
  process.on('SIGUSR2', () => {
    const gc = (globalThis as { gc?: () => void }).gc;
    // Twice: weak references and finalizers cleared by the first are collected by the second.
    gc?.();
    gc?.();
    writeFileSync(file, JSON.stringify({ gc: gc !== undefined, ...process.memoryUsage() }));
  });
}
