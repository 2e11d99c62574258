/**
 * How the CLI shows products' progress live: a progress bar per product on a terminal
 * (cli-progress), one plain line per change otherwise (logs, pipes, CI), e.g.
 * `eu-big-orders Seeding 412000/1000000 41% 95000 ev/s eta 6s`.
 */
import cliProgress from 'cli-progress';
import type { StoredDataProduct } from '../lib/resource-store/resource-store.ts';

/** True when the product is Ready for its current spec (its status is not one of an older generation). */
export function isReady(product: StoredDataProduct): boolean {
  const status = product.status;
  const ready = status?.conditions?.find((c) => c.type === 'Ready');
  const generation = product.metadata.generation;
  return (
    ready?.status === 'True' &&
    ready.observedGeneration === generation &&
    status?.observedGeneration === generation &&
    product.metadata.deletionTimestamp === undefined
  );
}

/** The phase to show: the status's, Deleting as soon as deletion was requested, Pending before any status. */
export function phaseOf(product: StoredDataProduct): string {
  if (product.metadata.deletionTimestamp !== undefined) return 'Deleting';
  return product.status?.phase ?? 'Pending';
}

/** What a product is doing, after its name: `Seeding 412000/1000000 41% 95000 ev/s eta 6s`, `Ready 200/200 100% lag 0`, `Failed SeedFailed: …`. */
export function progressDetail(product: StoredDataProduct): string {
  const phase = phaseOf(product);
  const status = product.status;
  const seed = status?.seed;
  const conditions = status?.conditions ?? [];
  const parts = [phase];
  if (seed !== undefined && (phase === 'Seeding' || phase === 'Ready')) {
    const processed = seed.processed ?? 0;
    const total = seed.total ?? 0;
    const percent = seed.percent ?? (total > 0 ? Math.min(99, Math.floor((100 * processed) / total)) : 0);
    parts.push(`${processed}/${total}`, `${percent}%`);
    if (phase === 'Seeding') {
      if (seed.eventsPerSecond !== undefined) parts.push(`${Math.round(seed.eventsPerSecond)} ev/s`);
      if (seed.etaSeconds !== undefined) parts.push(`eta ${Math.round(seed.etaSeconds)}s`);
    }
  }
  if (phase === 'Ready' && status?.lag?.events !== undefined) parts.push(`lag ${status.lag.events}`);
  if (phase === 'Seeding') {
    const reseeding = conditions.find((c) => c.type === 'Ready' && c.reason === 'Reseeding');
    if (reseeding !== undefined) parts.push('(new build; readers use the previous one)');
  }
  if (phase === 'Failed') {
    // The operator puts a failure on Ready (with the reason of the condition that failed).
    const failure =
      conditions.find((c) => c.type === 'Ready' && c.status !== 'True') ??
      conditions.find((c) => c.status !== 'True');
    if (failure !== undefined) parts.push(`${failure.reason}: ${failure.message ?? ''}`.trim());
  } else if (phase === 'Deleting' || phase === 'Provisioning') {
    const type = phase === 'Deleting' ? 'Deleting' : 'StoreReady';
    const message = conditions.find((c) => c.type === type)?.message;
    if (message !== undefined && message !== '') parts.push(message);
  }
  return parts.join(' ');
}

/** A live view of products' progress. */
export interface ProgressView {
  /** Shows the product as it is now. */
  show(product: StoredDataProduct): void;
  /** Shows that the product is gone. */
  remove(product: StoredDataProduct): void;
  /** Ends the view (a terminal keeps the last frame). */
  stop(): void;
}

/** How a view names a product: its name, or `namespace/name` across namespaces. */
export type ProductLabel = (product: StoredDataProduct) => string;

function keyOf(product: StoredDataProduct): string {
  return `${product.metadata.namespace}/${product.metadata.name}`;
}

/** One plain line per change of what a product shows; for anything that is not a terminal. */
export class LinesView implements ProgressView {
  private readonly last = new Map<string, string>();
  private readonly out: NodeJS.WritableStream;
  private readonly label: ProductLabel;

  constructor(out: NodeJS.WritableStream, label: ProductLabel) {
    this.out = out;
    this.label = label;
  }

  show(product: StoredDataProduct): void {
    this.write(product, progressDetail(product));
  }

  remove(product: StoredDataProduct): void {
    this.write(product, 'Deleted');
  }

  stop(): void {}

  private write(product: StoredDataProduct, detail: string): void {
    const line = `${this.label(product)} ${detail}`;
    if (this.last.get(keyOf(product)) === line) return;
    this.last.set(keyOf(product), line);
    this.out.write(`${line}\n`);
  }
}

/** A progress bar per product, redrawn in place; for a terminal. */
export class BarsView implements ProgressView {
  private readonly bars = new Map<string, cliProgress.SingleBar>();
  private readonly multi: cliProgress.MultiBar;
  private readonly label: ProductLabel;
  private width = 0;

  constructor(out: NodeJS.WritableStream, label: ProductLabel) {
    this.label = label;
    this.multi = new cliProgress.MultiBar(
      {
        stream: out,
        format: '{name} {bar} {detail}',
        barsize: 24,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        // The command stops the view on Ctrl-C itself, then exits.
        gracefulExit: false,
        linewrap: true,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  show(product: StoredDataProduct): void {
    const seed = product.status?.seed;
    const phase = phaseOf(product);
    // A bar needs a total above 0: an empty seed, or one not started, is drawn on a scale of 1.
    const total = Math.max(1, seed?.total ?? 0);
    const value =
      phase === 'Ready' || seed?.completedAt !== undefined ? total : Math.min(total, seed?.processed ?? 0);
    this.draw(product, total, value, progressDetail(product));
  }

  remove(product: StoredDataProduct): void {
    const bar = this.bars.get(keyOf(product));
    this.draw(product, bar?.getTotal() ?? 1, 0, 'Deleted');
  }

  stop(): void {
    this.multi.stop();
  }

  private draw(product: StoredDataProduct, total: number, value: number, detail: string): void {
    const name = this.label(product);
    this.width = Math.max(this.width, name.length);
    const payload = { name: name.padEnd(this.width), detail };
    const bar = this.bars.get(keyOf(product));
    if (bar === undefined) {
      this.bars.set(keyOf(product), this.multi.create(total, value, payload));
      return;
    }
    bar.setTotal(total);
    bar.update(value, payload);
  }
}

/** A bar view on a terminal, a lines view otherwise. */
export function progressView(out: NodeJS.WriteStream, label: ProductLabel): ProgressView {
  return out.isTTY ? new BarsView(out, label) : new LinesView(out, label);
}
