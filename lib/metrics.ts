/**
 * Offtake's Prometheus metrics (prom-client), one registry per process part that serves them —
 * never prom-client's global registry, so several apps can live in one process, as tests do.
 *
 * - HTTP: requests by method, route pattern (never the raw path: names stay out of label
 *   values, and the series stay few) and status code, and their durations.
 * - DataProducts: read from the resource store at each scrape — products by phase, and per
 *   product whether it is Ready, its seed progress and its lag, as on its status.
 * - Event log: events appended per stream, and the followers running and waiting.
 * - Pipeline workers: events processed, records written and dead letters per product and phase
 *   (`seed`, `tail`), tombstones purged, and batch durations.
 * - The Node process itself (CPU, memory, event loop delay, GC), with prom-client's standard names.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { PHASES } from '../crds/dataproduct.schema.ts';
import type { DataProductStatus } from '../crds/generated/types.ts';
import type { ResourceStore, StoredDataProduct } from './resource-store/resource-store.ts';

/** Buckets of the request and batch durations, in seconds. */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

/** Where a pipeline batch ran: seeding (replaying a chunk) or tailing. */
export type PipelinePhase = 'seed' | 'tail';

/** A product as metrics name it. */
export interface MetricsProduct {
  namespace: string;
  name: string;
}

/** What a pipeline worker reports: one call per written batch. */
export interface PipelineMetrics {
  batch(
    phase: PipelinePhase,
    product: MetricsProduct,
    counts: { processed: number; written: number; deadLettered: number },
    seconds: number,
  ): void;
  tombstonesPurged(product: MetricsProduct, count: number): void;
}

/** How a reconcile ended: done, done and to be checked again later, or failed (retried with backoff). */
export type ReconcileOutcome = 'done' | 'requeued' | 'failed';

/** What the operator's controller reports. */
export interface ControllerMetrics {
  reconciled(outcome: ReconcileOutcome, seconds: number): void;
  /** Where the queue's depth is read at each scrape (the controller of the current term). */
  watchQueue(depth: () => number): void;
}

/** Counts the event log's HTTP face reports. */
export interface EventLogMetrics {
  appended(stream: string, count: number): void;
}

/** The follower counts of an event log (see `RedisEventLog.followerCount`). */
export interface FollowerSource {
  readonly followerCount: { running: number; waiting: number };
}

/** The metrics of one Offtake process. */
export class OfftakeMetrics implements PipelineMetrics, EventLogMetrics, ControllerMetrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'code'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  private readonly eventsAppended: Counter<'stream'>;
  private readonly pipelineEvents: Counter<'phase' | 'namespace' | 'name'>;
  private readonly pipelineWritten: Counter<'phase' | 'namespace' | 'name'>;
  private readonly pipelineDeadLetters: Counter<'phase' | 'namespace' | 'name'>;
  private readonly pipelineBatch: Histogram<'phase'>;
  private readonly tombstones: Counter<'namespace' | 'name'>;
  private readonly reconciles: Counter<'outcome'>;
  private readonly reconcileDuration: Histogram;
  private queueDepth: () => number = () => 0;

  /** `processMetrics`: also the Node process's own (default true). */
  constructor(options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.httpRequests = new Counter({
      name: 'offtake_http_requests_total',
      help: 'HTTP requests answered, by method, route pattern and status code.',
      labelNames: ['method', 'route', 'code'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'offtake_http_request_duration_seconds',
      help: 'Time to answer an HTTP request (to the end of the answer; watches and follows last long).',
      labelNames: ['method', 'route'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.eventsAppended = new Counter({
      name: 'offtake_eventlog_appended_events_total',
      help: 'Events appended to the event log through the API, by stream (retries the log recognised not counted).',
      labelNames: ['stream'],
      registers,
    });
    const product = ['phase', 'namespace', 'name'] as const;
    this.pipelineEvents = new Counter({
      name: 'offtake_pipeline_events_total',
      help: "Events of a product's types read and run through its filter and transform, by phase (seed, tail).",
      labelNames: product,
      registers,
    });
    this.pipelineWritten = new Counter({
      name: 'offtake_pipeline_records_written_total',
      help: 'Records that changed the target (older ones the guard turned away are not counted), by phase.',
      labelNames: product,
      registers,
    });
    this.pipelineDeadLetters = new Counter({
      name: 'offtake_pipeline_dead_letters_total',
      help: "Events sent to a product's dead-letter stream, by phase.",
      labelNames: product,
      registers,
    });
    this.pipelineBatch = new Histogram({
      name: 'offtake_pipeline_batch_duration_seconds',
      help: 'Time to run a batch through the filter and transform and write it, by phase.',
      labelNames: ['phase'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.reconciles = new Counter({
      name: 'offtake_operator_reconciles_total',
      help: 'Reconciles of DataProducts by outcome: done, requeued (checked again later) or failed (retried with backoff).',
      labelNames: ['outcome'],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: 'offtake_operator_reconcile_duration_seconds',
      help: 'Time one reconcile of a DataProduct took.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    const depth = () => this.queueDepth();
    new Gauge({
      name: 'offtake_operator_queue_depth',
      help: 'DataProducts waiting for a reconcile now.',
      registers,
      collect() {
        this.set(depth());
      },
    });
    this.tombstones = new Counter({
      name: 'offtake_pipeline_tombstones_purged_total',
      help: 'Tombstones of deleted keys purged once no older event could arrive any more.',
      labelNames: ['namespace', 'name'],
      registers,
    });
  }

  reconciled(outcome: ReconcileOutcome, seconds: number): void {
    this.reconciles.inc({ outcome });
    this.reconcileDuration.observe(seconds);
  }

  watchQueue(depth: () => number): void {
    this.queueDepth = depth;
  }

  /** Adds the gauge that says whether this operator replica leads (reconciles) now. */
  watchLeadership(isLeader: () => boolean): void {
    new Gauge({
      name: 'offtake_operator_leader',
      help: 'Whether this operator replica holds the Lease and reconciles: 1 or 0.',
      registers: [this.registry],
      collect() {
        this.set(isLeader() ? 1 : 0);
      },
    });
  }

  batch(
    phase: PipelinePhase,
    product: MetricsProduct,
    counts: { processed: number; written: number; deadLettered: number },
    seconds: number,
  ): void {
    const labels = { phase, namespace: product.namespace, name: product.name };
    this.pipelineEvents.inc(labels, counts.processed);
    this.pipelineWritten.inc(labels, counts.written);
    this.pipelineDeadLetters.inc(labels, counts.deadLettered);
    this.pipelineBatch.observe({ phase }, seconds);
  }

  tombstonesPurged(product: MetricsProduct, count: number): void {
    this.tombstones.inc({ namespace: product.namespace, name: product.name }, count);
  }

  appended(stream: string, count: number): void {
    this.eventsAppended.inc({ stream }, count);
  }

  /** Adds the event log's follower gauges, read at each scrape. */
  watchEventLog(log: FollowerSource): void {
    new Gauge({
      name: 'offtake_eventlog_followers',
      help: 'Event-log followers (API follows and product tails) of this process: running, and waiting for new events.',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const { running, waiting } = log.followerCount;
        this.set({ state: 'running' }, running);
        this.set({ state: 'waiting' }, waiting);
      },
    });
  }

  /**
   * Adds the DataProduct gauges, read from `store` at each scrape (one list of every namespace:
   * what `kubectl get dataproducts -A` reads).
   */
  watchProducts(store: Pick<ResourceStore, 'list'>): void {
    const registers = [this.registry];
    const perProduct = ['namespace', 'name'] as const;
    const listErrors = new Counter({
      name: 'offtake_dataproducts_list_errors_total',
      help: 'Scrapes whose DataProduct gauges are missing because the resource store could not be read.',
      registers,
    });
    // One list per scrape, shared by the gauges below (they are collected together).
    let cached: { at: number; items: Promise<StoredDataProduct[]> } | undefined;
    const products = (): Promise<StoredDataProduct[]> => {
      const now = Date.now();
      if (cached === undefined || now - cached.at > 1000) {
        const items = store.list().then(
          (list) => list.items,
          () => {
            listErrors.inc();
            return [];
          },
        );
        cached = { at: now, items };
      }
      return cached.items;
    };
    const gauge = (
      name: string,
      help: string,
      labelNames: readonly string[],
      fill: (g: Gauge, items: StoredDataProduct[]) => void,
    ) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          this.reset();
          fill(this, await products());
        },
      });
    gauge('offtake_dataproducts', 'DataProducts by phase.', ['phase'], (g, items) => {
      // Every phase has a series, also when no product is in it.
      for (const phase of PHASES) g.set({ phase }, 0);
      for (const p of items) if (p.status?.phase !== undefined) g.inc({ phase: p.status.phase });
    });
    // One gauge per status figure, a series per product that shows it.
    const perProductFigures: [string, string, (status: DataProductStatus) => number | undefined][] = [
      [
        'offtake_dataproduct_ready',
        'Whether a DataProduct is Ready (its Ready condition is True): 1 or 0.',
        (st) => (st.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? 1 : 0),
      ],
      [
        'offtake_dataproduct_seed_processed_events',
        "Events the seed of a DataProduct's current build has replayed.",
        (st) => st.seed?.processed,
      ],
      [
        'offtake_dataproduct_seed_total_events',
        "Events the seed of a DataProduct's current build replays in all (an estimate while it runs).",
        (st) => st.seed?.total,
      ],
      [
        'offtake_dataproduct_lag_events',
        "Events of a DataProduct's types in the log that its tail has not applied yet.",
        (st) => st.lag?.events,
      ],
      [
        'offtake_dataproduct_lag_seconds',
        'Age of the oldest event a DataProduct has not applied yet.',
        (st) => st.lag?.seconds,
      ],
    ];
    for (const [name, help, figure] of perProductFigures) {
      gauge(name, help, perProduct, (g, items) => {
        for (const p of items) {
          const value = figure(p.status ?? {});
          if (value !== undefined) g.set(labelsOf(p), value);
        }
      });
    }
  }

  /** The exposition: content type and text. */
  async exposition(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}

function labelsOf(product: StoredDataProduct): { namespace: string; name: string } {
  return { namespace: product.metadata.namespace, name: product.metadata.name };
}
