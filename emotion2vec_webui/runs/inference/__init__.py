"""The service and its model worker: requests scheduled onto the model, here or on Ray Serve replicas.

``service`` owns the loaded model and the queue every face submits to; ``scheduler`` batches and orders
what reaches the model; ``status`` reports how it is doing; ``ray_*`` put the model on Ray Serve
(``serve --ray``).
"""
