// The manager's HTTPS API: every route, on the shared server (src/http/server.ts).
import type { HttpServer } from '../../http/server.js';
import type { ManagerService } from '../service.js';
import { registerImageRoutes } from './images-routes.js';
import { registerNodeRoutes } from './nodes-routes.js';
import { registerUserRoutes } from './users-routes.js';
import { registerVmRoutes } from './vms-routes.js';

export function registerManagerRoutes(app: HttpServer, service: ManagerService): void {
  registerUserRoutes(app, service);
  registerImageRoutes(app, service);
  registerNodeRoutes(app, service);
  registerVmRoutes(app, service);
}
