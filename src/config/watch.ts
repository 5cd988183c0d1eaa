/**
 * Notices when a configuration file may have changed. It watches the file's
 * folder, not the file: Kubernetes updates a mounted ConfigMap by swapping a
 * symlink beside it, and editors replace files by renaming.
 */
import { watch, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';

/** Bursts of events (an editor's write, a symlink swap) become one call. */
const SETTLE_MS = 200;

export function watchConfigFile(path: string, onChange: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher;
  try {
    watcher = watch(dirname(path), { persistent: false }, () => {
      clearTimeout(timer);
      timer = setTimeout(onChange, SETTLE_MS);
    });
  } catch {
    return () => {};
  }
  watcher.on('error', () => watcher.close());
  return () => {
    clearTimeout(timer);
    watcher.close();
  };
}
