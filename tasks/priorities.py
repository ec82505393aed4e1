"""Message priorities on Redis: kombu keeps one list per step (``recognize``, ``recognize\\x06\\x163``, ``...6``,
``...9``) and a worker BRPOPs them in ascending step order, so the LOWEST number is served FIRST (the reverse of
RabbitMQ). Fresh uploads go at 0, bulk reprocessing at 9: live traffic overtakes any reprocessing backlog.
"""

PRIORITY_STEPS = [0, 3, 6, 9]
LIVE_PRIORITY = 0
REPROCESS_PRIORITY = 9
