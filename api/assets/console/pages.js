// The console's routes: each takes the path's parts after its own segment
// and the viewer, reads what it shows through GraphQL, and returns the
// nodes of <main>. Lists are bounded (first: 50 / 100).

import { customers } from './customers.js';
import { plans, creditSystems } from './catalog.js';
import { orders, invoices } from './money.js';
import { webhooks, emails, jobs, apiKeys } from './operations.js';

export const routes = {
  customers, plans, 'credit-systems': creditSystems, orders, invoices, webhooks, emails, jobs, 'api-keys': apiKeys,
};
