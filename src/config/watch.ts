/**
 * Notices when a configuration file may have changed. It watches the file's
 * folder, not the file: Kubernetes updates a mounted ConfigMap by swapping a
 * symlink beside it, and editors replace files by renaming.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
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

/** A file the configuration reads, and the key that names it (for log lines: never its content). */
export interface WatchedFile {
  readonly key: string;
  readonly path: string;
}

/**
 * Calls `onChange` with the keys of the files whose content changed (a
 * digest, taken now and after each burst of events in their folders, differs).
 * Each file's folder is watched, as for the configuration file: Kubernetes
 * updates a mounted Secret by pointing a `..data` symlink beside the file at
 * a new folder, so the file's own inode never changes. A file that cannot be
 * read counts as changed too: the reload that follows reports it, and keeps
 * the configuration in force.
 */
export function watchFiles(files: readonly WatchedFile[], onChange: (keys: string[]) => void): () => void {
  const digests = new Map<string, string | null>(files.map((file) => [file.path, fileDigest(file.path)]));
  let timer: NodeJS.Timeout | undefined;
  const settle = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const changed: string[] = [];
      for (const file of files) {
        const now = fileDigest(file.path);
        if (now === digests.get(file.path)) continue;
        digests.set(file.path, now);
        changed.push(file.key);
      }
      if (changed.length > 0) onChange(changed);
    }, SETTLE_MS);
  };
  const watchers: FSWatcher[] = [];
  for (const folder of new Set(files.map((file) => dirname(file.path)))) {
    try {
      const watcher = watch(folder, { persistent: false }, settle);
      watcher.on('error', () => watcher.close());
      watchers.push(watcher);
    } catch {
      // A folder that cannot be watched: its files change on SIGHUP only, as before.
    }
  }
  return () => {
    clearTimeout(timer);
    for (const watcher of watchers) watcher.close();
  };
}

/**
 * Only regular files are read: a FIFO or a device would block the event loop
 * here (the reload that reads it is the operator's own doing, on SIGHUP).
 */
function fileDigest(path: string): string | null {
  try {
    if (!statSync(path).isFile()) return 'not a regular file';
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}
