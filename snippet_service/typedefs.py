"""Typed keys for everything the web app keeps on its Application."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from arq.connections import ArqRedis

from snippet_service.cache import PageCache
from snippet_service.config import Config
from snippet_service.db import Database
from snippet_service.events import DoneListener
from snippet_service.hits import HitCounter
from snippet_service.intake import Intake
from snippet_service.languages import Languages

CONFIG = web.AppKey("config", Config)
DB = web.AppKey("db", Database)
REDIS = web.AppKey("redis", ArqRedis)
HTTP = web.AppKey("http", aiohttp.ClientSession)
LANGUAGES = web.AppKey("languages", Languages)
DONE = web.AppKey("done", DoneListener)
PAGES = web.AppKey("pages", PageCache)
INTAKE = web.AppKey("intake", Intake)
HITS = web.AppKey("hits", HitCounter)
