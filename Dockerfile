# syntax=docker/dockerfile:1
# The one Offtake image: `offtake api`, `offtake operator`, `offtake worker` (and `offtake up`).
#   docker build -t offtake:0.1.0 .

# Compiles the TypeScript (the build needs the dev dependencies: typescript).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY api ./api
COPY cli ./cli
COPY crds ./crds
COPY lib ./lib
COPY operator ./operator
COPY templates ./templates
COPY worker ./worker
RUN npx tsc -p tsconfig.build.json

# The runtime: production dependencies and the compiled code only, run as the unprivileged
# `node` user (uid 1000, what deploy/ and the dedicated worker template run as).
FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would compile again (no typescript here); native add-ons ship
# prebuilt binaries and fall back to JavaScript.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
RUN chmod 0755 bin/offtake.js && ln -s /app/bin/offtake.js /usr/local/bin/offtake
USER node
ENTRYPOINT ["offtake"]
CMD ["--help"]
