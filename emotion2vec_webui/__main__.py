from emotion2vec_webui.cli.main import main

raise SystemExit(main())
